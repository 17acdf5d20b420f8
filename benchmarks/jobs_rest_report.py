"""The REST jobs benchmark's figures as markdown: one run's section, and a before/after
table of two runs (each kept with `python -m benchmarks.jobs_rest --json`).

    python -m benchmarks.jobs_rest_report [--rows r.json] [--before a.json --after b.json]
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.cpu import LOAD_GENERATOR
from benchmarks.report import markdown_table, run_line, write_section
from benchmarks.sse import ratio

Row = dict[str, Any]

# (what, bench, the path's start, figure, the goal): the before/after table's lines.
MEASURES: tuple[tuple[str, str, str, str, str], ...] = (
    ("first token, inference Generate (gRPC)", "ttft", "inference Generate", "p50_ms", ""),
    ("first token, CreateJob → WatchJob (gRPC)", "ttft", "CreateJob", "p50_ms", "≤ Generate + 40"),
    ("first token, chat completions stream (REST)", "ttft", "/v1/chat", "p50_ms", ""),
    ("first token, POST /v1/jobs → SSE (REST)", "ttft", "POST /v1/jobs", "p50_ms", ""),
    ("first token, job over Generate (gRPC), added", "ttft", "CreateJob", "added_p50_ms",
     "≤ 40"),
    ("first token, job over chat stream (REST), added", "ttft", "POST /v1/jobs",
     "added_p50_ms", ""),
    ("/v1/embeddings, c=8, per s", "throughput", "/v1/embeddings", "per_s", ""),
    ("embed jobs, Prefer: wait, c=8, per s", "throughput", "POST /v1/jobs, Prefer", "per_s",
     "≥ 100"),
    ("embed jobs, Prefer: wait, against /v1/embeddings", "throughput",
     "POST /v1/jobs, Prefer", "vs_direct", "≥ 10x before"),
    ("embed job, Prefer: wait, p50", "throughput", "POST /v1/jobs, Prefer", "p50_ms", "≤ 100"),
    ("embed job, Prefer: wait, p99", "throughput", "POST /v1/jobs, Prefer", "p99_ms", ""),
    ("embed jobs, CreateJob → WatchJob, c=8, per s", "throughput", "CreateJob", "per_s", ""),
    ("CreateJob p50 (gRPC, c=8)", "create", "CreateJob (gRPC)", "p50_ms", "≤ 10"),
    ("CreateJob p50 (gRPC, one at a time)", "create", "CreateJob (gRPC, one", "p50_ms", ""),
    ("POST /v1/jobs p50 (REST, c=8)", "create", "POST /v1/jobs", "p50_ms", ""),
    ("terminal event stored → Prefer: wait answer, p50", "terminal", "POST /v1/jobs", "p50_ms",
     ""),
    ("terminal event stored → SSE follower (generate, alone), p50", "terminal",
     "SSE follower (generate", "p50_ms", ""),
    ("terminal event stored → SSE follower (embed, c=8), p50", "terminal",
     "SSE follower (embed", "p50_ms", ""),
)  # fmt: skip


UNITS = {"per_s": "/s", "vs_direct": "x"}

# The CPU table's process columns: `edge` sums the edge's replicas, `other` the rest.
CPU_COLUMNS = ("temporal", "worker", "planner", "edge", "envoy", "inference", "triton", "valkey")


def figure(rows: Sequence[Row], bench: str, path_start: str, key: str) -> float:
    """One figure of a run: the first row of `bench` whose path starts so; NaN if none."""
    for row in rows:
        if row.get("bench") == bench and str(row.get("path", "")).startswith(path_start):
            value = row.get(key, float("nan"))  # a ratio is kept as "3.2x"
            return float(value.removesuffix("x")) if isinstance(value, str) else float(value)
    return float("nan")


def env(rows: Sequence[Row]) -> Row:
    return next((r for r in rows if r.get("bench") == "env"), {})


def before_after_table(before: Sequence[Row], after: Sequence[Row]) -> str:
    lines = [
        "| measure | before | after | after/before | issue 12 goal |",
        "|---|---|---|---|---|",
    ]
    for what, bench, path, key, goal in MEASURES:
        old, new = figure(before, bench, path, key), figure(after, bench, path, key)
        unit = UNITS.get(key, " ms")
        cells = [f"{v:g}{unit}" if v == v else "" for v in (old, new)]
        lines.append(f"| {what} | {cells[0]} | {cells[1]} | {ratio(new, old)} | {goal} |")
    return "\n".join(lines)


BEFORE_AFTER_TITLE = "Jobs: before and after the planner's fast path (issue 12)"


def before_after_markdown(
    before: Sequence[Row], after: Sequence[Row], title: str = BEFORE_AFTER_TITLE
) -> str:
    old, new = env(before), env(after)
    return "\n\n".join(
        [
            f"## {title}",
            f"`python -m benchmarks.jobs_rest` on commit `{old.get('commit', '?')}` (before) and "
            f"`{new.get('commit', '?')}` (after), the same benchmark code, on the same machine, "
            "run back to back. One-minute load average: before "
            f"{old.get('load', '?')}; after {new.get('load', '?')} (other work shared the 2 "
            "cores; compare the ratios against the direct path within each run more than the "
            "absolute figures). Reproduce with `python -m benchmarks.jobs_rest --json "
            "before.json` on each commit, then `python -m benchmarks.jobs_rest_report --before "
            "before.json --after after.json --write docs/benchmarks.md`.",
            before_after_table(before, after),
        ]
    )


def process_cells(by_process: Mapping[str, float]) -> dict[str, str]:
    """One CPU row's ms by column, 1 decimal; empty where none (under 0.05 ms per call)."""
    summed = dict.fromkeys((*CPU_COLUMNS, "other", LOAD_GENERATOR), 0.0)
    for name, ms in by_process.items():
        key = "edge" if name.startswith("edge") else name
        summed[key if key in summed else "other"] += ms
    return {name: f"{ms:.1f}" if ms else "" for name, ms in summed.items()}


def cpu_markdown(rows: Sequence[Row]) -> list[str]:
    """The CPU per call table and what its ceiling means; nothing for a run without it."""
    cpu = [r for r in rows if r.get("bench") == "cpu"]
    if not cpu:
        return []
    table = [
        {"bench": "cpu", "path": r["path"], "total_ms": r["total_ms"]}
        | {"ceiling_per_s": r["ceiling_per_s"]}
        | process_cells(r.get("by_process", {}))
        for r in cpu
    ]
    columns = ["path", "total_ms", "ceiling_per_s", *CPU_COLUMNS, "other", LOAD_GENERATOR]
    return [
        "### CPU per call or job, by process (same loops)",
        markdown_table(table, "cpu", columns),
        "CPU ms (user + system, each process with its children, from /proc) per call or job "
        "in each loop above, its warm-up included; `total_ms` is the mesh's, without the load "
        f"generator. `ceiling_per_s` = {cpu[0].get('cores', '?')} cores x 1000 / `total_ms`: "
        "at 100% of every core, with this much CPU per call, the mesh could not run more than "
        "this many per second. Empty: under 0.05 ms.",
    ]


def jobs_rest_markdown(rows: Sequence[Row]) -> str:
    """One run's section: each table with its ratios against the direct path."""
    commit, load = env(rows).get("commit", "?"), env(rows).get("load", "?")
    ttft = ["level", "path", "n", "p50_ms", "p90_ms", "vs_direct", "added_p50_ms"]
    through = ["path", "concurrency", "n", "p50_ms", "p99_ms", "per_s", "vs_direct", "late"]
    return "\n\n".join(
        [
            "## Jobs at the REST level (Envoy, edge, planner, Temporal, worker)",
            run_line("python -m benchmarks.jobs_rest --write docs/benchmarks.md")
            + f" Commit `{commit}`; one-minute load average {load}.",
            "### Time to first token, `test-streamer`: through a job against the direct path",
            markdown_table(rows, "ttft", ttft),
            "`vs_direct`: against the first row of its level in the same run (REST: the "
            "streamed chat completion's first content chunk; the job: from `POST /v1/jobs` to "
            "the first `token` event of `GET /v1/jobs/{id}/events`). Both REST paths go "
            "through Envoy's public listener with an API key, one call at a time, alternating.",
            "### One text through `test-echo-embed`, concurrency 8",
            markdown_table(rows, "throughput", through),
            "`p50_ms`/`p99_ms`: one call, or one whole job (from its create call until its "
            "answer, its SSE stream's end or WatchJob's end). `vs_direct`: per second against "
            "`/v1/embeddings`. `late`: `Prefer: wait` answers that came as 202 (the job not "
            "finished within the wait), timed to the 202.",
            *cpu_markdown(rows),
            "### The create call, in the job loops above (and one at a time, in the "
            "first-token runs)",
            markdown_table(rows, "create", ["path", "n", "p50_ms", "p99_ms"]),
            "### Terminal event stored → the client has it",
            markdown_table(rows, "terminal", ["path", "n", "p50_ms", "p90_ms", "p99_ms"]),
            "From the terminal state change's cursor (the Valkey stream id, Valkey's clock "
            "when XADD stored it, in whole ms: figures read up to 1 ms long) to the `Prefer: "
            "wait` answer's arrival, or to the SSE frame's arrival at the follower. The edge "
            "answers a SUCCEEDED job's `Prefer: wait` from the job as created and the `result` "
            "and end events it followed (`common/jobview.py`); for other ends, and in runs "
            "before that change, the row also holds a GetJob that waits until the job's state "
            "shows the end.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=Path, help="one run's rows: print its section")
    parser.add_argument("--before", type=Path, help="rows of the run before")
    parser.add_argument("--after", type=Path, help="rows of the run after")
    parser.add_argument("--write", type=Path, help="write the sections into this page")
    parser.add_argument(
        "--section",
        default="jobs-before-after",
        help="the page's section for the before/after table (a new name keeps earlier rounds)",
    )
    parser.add_argument("--title", default=BEFORE_AFTER_TITLE, help="the table's heading")
    args = parser.parse_args()
    sections: dict[str, str] = {}
    if args.rows:
        sections["jobs-rest"] = jobs_rest_markdown(json.loads(args.rows.read_text()))
    if args.before and args.after:
        before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
        sections[args.section] = before_after_markdown(before, after, args.title)
    if not sections:
        parser.error("give --rows, or --before and --after")
    for name, section in sections.items():
        print(section)
        if args.write:
            write_section(args.write, name, section)


if __name__ == "__main__":
    main()
