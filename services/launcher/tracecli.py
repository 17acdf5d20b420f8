"""`switchboard trace <job>`: one job's spans as a tree in the terminal, read from the trace
receiver's REST API (Phoenix's `GET /v1/projects/{project}/spans`).

Every span a service makes while it works for a job carries `switchboard.job_id`
(`common.tracing`), so the job's traces are the traces of those spans; each is printed whole,
root first, children in the order they started. A span whose parent never reached the
receiver is printed as a root and marked, rather than dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.tree import Tree

from . import receiver
from .ports import Ports

RECEIVER_ENV = "SWITCHBOARD_TRACE_RECEIVER"
JOB_KEY = "switchboard.job_id"
SERVICE_KEY = "switchboard.service"
PAGE = 1000


class TraceError(RuntimeError):
    """The receiver could not be read, or knows no span of the job."""


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    start: datetime
    end: datetime
    status: str
    attributes: dict[str, Any] = field(repr=False)
    children: list[Span] = field(default_factory=list, repr=False)

    @property
    def millis(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    parents: list[argparse.ArgumentParser] | None = None,
) -> None:
    """`parents` add --base-port: the local stack whose receiver to read by default."""
    text = "print one job's traces as span trees, from the trace receiver (up --with tracing)"
    cmd = sub.add_parser("trace", help=text, description=text, parents=parents or [])
    cmd.add_argument("job", help="the job id (as the API returned it)")
    cmd.add_argument(
        "--receiver",
        default=os.environ.get(RECEIVER_ENV) or None,
        help=f"Phoenix's base URL (env {RECEIVER_ENV}; default: the local stack's)",
    )
    cmd.add_argument("--project", default=receiver.PHOENIX_PROJECT, help="Phoenix project")
    cmd.add_argument("--json", action="store_true", help="the spans as JSON lines, flat")


def run(args: argparse.Namespace) -> int:
    base = args.receiver or receiver.ui_url(Ports.at(args.base_port))
    try:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            traces = job_traces(client, args.project, args.job)
    except (TraceError, httpx.HTTPError) as e:
        print(f"trace: {e}", file=sys.stderr)
        return 1
    if args.json:
        for spans in traces:
            for span in spans:
                row = asdict(span)
                row.pop("children")
                print(json.dumps(row, default=str))
        return 0
    console = Console() if sys.stdout.isatty() else Console(width=200)
    for spans in traces:
        console.print(render(spans))
    return 0


def job_traces(client: httpx.Client, project: str, job: str) -> list[list[Span]]:
    """Every trace with a span of `job`, each its whole list of spans, oldest trace first."""
    marked = _spans(client, project, [("attribute", f"{JOB_KEY}:{json.dumps(job)}")])
    trace_ids = sorted({span.trace_id for span in marked})
    if not trace_ids:
        raise TraceError(f"the receiver at {client.base_url} has no span of job {job!r}")
    traces = [_spans(client, project, [("trace_id", trace_id)]) for trace_id in trace_ids]
    return sorted(traces, key=lambda spans: min(span.start for span in spans))


def _spans(client: httpx.Client, project: str, query: list[tuple[str, str]]) -> list[Span]:
    found: list[Span] = []
    cursor: str | None = None
    while True:
        params = httpx.QueryParams([*query, ("limit", str(PAGE))])
        if cursor:
            params = params.add("cursor", cursor)
        response = client.get(f"/v1/projects/{project}/spans", params=params)
        if response.status_code == 404:
            raise TraceError(f"the receiver at {client.base_url} has no project {project!r}")
        response.raise_for_status()
        body = response.json()
        found.extend(_span(row) for row in body["data"])
        cursor = body.get("next_cursor")
        if not cursor:
            return found


def _span(row: Mapping[str, Any]) -> Span:
    attributes = row.get("attributes") or {}
    return Span(
        name=row["name"],
        trace_id=row["context"]["trace_id"],
        span_id=row["context"]["span_id"],
        parent_id=row.get("parent_id") or None,
        service=str(attribute(attributes, SERVICE_KEY) or "?"),
        start=datetime.fromisoformat(row["start_time"]),
        end=datetime.fromisoformat(row["end_time"]),
        status=row.get("status_code") or "UNSET",
        attributes=dict(attributes),
    )


def attribute(attributes: Mapping[str, Any], key: str) -> Any:
    """A dotted attribute, whether the receiver kept it flat or nested it by its dots."""
    if key in attributes:
        return attributes[key]
    node: Any = attributes
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def tree(spans: Sequence[Span]) -> list[Span]:
    """Links each span under its parent; returns the roots (and orphans), by start time."""
    by_id = {span.span_id: span for span in spans}
    roots: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        span.children = []
    for span in sorted(spans, key=lambda s: s.start):
        parent = by_id.get(span.parent_id) if span.parent_id else None
        (parent.children if parent else roots).append(span)
    return roots


def render(spans: Sequence[Span]) -> Tree:
    roots = tree(spans)
    start = min(span.start for span in spans)
    end = max(span.end for span in spans)
    millis = (end - start).total_seconds() * 1000
    title = f"trace {spans[0].trace_id}  {len(spans)} spans  {millis:.1f} ms"
    out = Tree(f"[bold]{title}[/]")
    for root in roots:
        _add(out, root, orphan=root.parent_id is not None)
    return out


def _add(parent: Tree, span: Span, *, orphan: bool = False) -> None:
    status = " [red]ERROR[/]" if span.status == "ERROR" else ""
    missing = " [dim](parent not received)[/]" if orphan else ""
    label = f"{span.name}  [cyan]{span.service}[/]  {span.millis:.1f} ms{status}{missing}"
    node = parent.add(label)
    for child in span.children:
        _add(node, child)
