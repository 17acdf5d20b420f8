"""One job's trace in a stack run `--with tracing`: the edge's request, the planner, the
worker's workflow and activity, the inference service and its call to Triton are one tree in
Phoenix, each span under its real parent; `switchboard trace` prints that tree."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from switchboard import cli
from switchboard.launcher import receiver, tracecli
from switchboard.launcher.ports import free_block
from tests.common.otlp import install_phoenix

from ..stack import Stack, running_stack
from .conftest import API_KEY

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}
HOPS = {"edge", "planner", "worker", "inference"}
TRITON_SERVICE = "/inference.GRPCInferenceService/"
WAIT_S = 60.0


@pytest.fixture(scope="module")
def traced_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    install_phoenix()
    env = {"SWITCHBOARD_WITH": receiver.NAME}
    with running_stack(tmp_path_factory.mktemp("traced"), free_block(), env) as stack:
        yield stack


def _finished_job(stack: Stack) -> str:
    body = {
        "pipeline": "generate",
        "input": {
            "generate": {"model": "test-streamer", "prompt": "trace me", "params": {"maxTokens": 4}}
        },
    }
    with httpx.Client(base_url=stack.public, timeout=60, headers=AUTH) as client:
        reply = client.post("/v1/jobs", json=body)
        assert reply.status_code == 202, reply.text
        job_id = str(reply.json()["name"]).removeprefix("jobs/")
        deadline = time.monotonic() + WAIT_S
        while client.get(f"/v1/jobs/{job_id}").json()["state"] != "SUCCEEDED":
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.2)
    return job_id


def _triton_call(spans: list[tracecli.Span]) -> tracecli.Span | None:
    calls = [s for s in spans if s.service == "inference" and TRITON_SERVICE in s.name]
    return calls[0] if calls else None


def _path_to_root(spans: list[tracecli.Span]) -> list[tracecli.Span] | None:
    """Triton's client call and its ancestors up to the root, once each has been received."""
    by_id = {span.span_id: span for span in spans}
    path = [call] if (call := _triton_call(spans)) else []
    while path and path[-1].parent_id is not None:
        parent = by_id.get(path[-1].parent_id)
        if parent is None:
            return None
        path.append(parent)
    return path or None


def _job_trace(stack: Stack, job_id: str) -> tuple[list[tracecli.Span], list[tracecli.Span]]:
    """The job's trace and the path from the Triton call to its root, once every span on
    that path has reached Phoenix (each process exports in batches of its own)."""
    deadline = time.monotonic() + WAIT_S
    traces: list[list[tracecli.Span]] = []
    with httpx.Client(base_url=receiver.ui_url(stack.ports), timeout=10) as client:
        while time.monotonic() < deadline:
            try:
                traces = tracecli.job_traces(client, receiver.PHOENIX_PROJECT, job_id)
            except tracecli.TraceError:
                traces = []
            for spans in traces:
                if path := _path_to_root(spans):
                    return spans, path
            time.sleep(1)
    seen = [(s.service, s.name, s.span_id, s.parent_id) for spans in traces for s in spans]
    raise AssertionError(f"no span path from Triton's call to a root for {job_id}: {seen}")


def test_one_jobs_trace_links_every_hop_parent_to_child(
    traced_mesh: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = _finished_job(traced_mesh)
    spans, path = _job_trace(traced_mesh, job_id)
    # Every span from Triton's client call up to the root is under a parent Phoenix received
    # (in the trace the job's spans are in), so the hops form one tree, not pieces.
    root = path[-1]
    assert root.service == "edge" and root.name == "POST /v1/jobs", root
    assert {span.service for span in path} >= HOPS
    # The hops in causal order: each service first appears below the one that called it.
    first_seen = [span.service for span in reversed(path)]
    order = [first_seen.index(service) for service in ("edge", "planner", "worker", "inference")]
    assert order == sorted(order)
    names = [span.name for span in reversed(path)]
    (start,) = [s for s in path if s.name.startswith("StartWorkflow:")]
    assert start.service == "planner", names
    assert any(s.name.startswith("RunActivity:") and s.service == "worker" for s in path), names
    # Temporal's interceptor parents the workflow run and its activities on StartWorkflow.
    runs = [s for s in spans if s.name.startswith("RunWorkflow:")]
    assert runs and all(r.parent_id == start.span_id and r.service == "worker" for r in runs)
    assert all(s.trace_id == root.trace_id for s in spans)

    port = str(traced_mesh.ports.base)
    assert cli.main(["trace", job_id, "--base-port", port]) == 0
    out = capsys.readouterr().out
    assert root.trace_id in out
    for span in path:
        assert span.name in out
