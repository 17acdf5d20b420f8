"""Where a generate job's first token goes: one job at a time, each step's time since the
CreateJob call, next to inference Generate called directly, in one run.

    python -m benchmarks.job_timeline [--runs 20] [--write docs/benchmarks.md]

Starts one local mesh with the launcher on free ports (as benchmarks.jobs_rest does) and
reads, for each job, clocks of the same machine:
  - the client's: CreateJob returned, the first token event seen on WatchJob;
  - the event log's: the QUEUED and RUNNING events' and the first token's own times;
  - Temporal's: the time of each history event up to the generate activity's start (the
    workflow's start, each workflow task scheduled, started and completed, markers);
  - the worker's and the inference service's log lines for the job ("generation started",
    "generate stream opened", ...), which carry their time and job id.
It prints each step's p50, min and max over the runs (ms after the CreateJob call), the
direct Generate's first token and the mesh's CPU per job by process; --write replaces this
benchmark's section of the page. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from benchmarks import cpu
from benchmarks.figures import pct
from benchmarks.jobs import (
    CLIENT,
    STREAM_MODEL,
    STREAM_TOKENS,
    Planner,
    direct_first_token,
    generate_job,
    job_first_token,
)
from benchmarks.jobs_rest import start_stack
from benchmarks.report import markdown_table, run_line, write_section
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2
from switchboard.common.jobref import JobRef
from switchboard.launcher import stack

WARM_UP = 5
HISTORY_EVENTS = 12  # enough to pass the generate activity's start
LOGGED = ("worker", "inference")
Marks = dict[str, float]  # step → seconds since the epoch


def history_marks(events: Iterable[HistoryEvent]) -> Marks:
    """Temporal's time of each history event, named by its kind (`workflow task started`);
    a kind seen again is numbered (`workflow task started #2`)."""
    seen: Counter[str] = Counter()
    marks: Marks = {}
    for event in events:
        attributes = event.WhichOneof("attributes") or "unknown"
        kind = attributes.removesuffix("_event_attributes").replace("_", " ")
        seen[kind] += 1
        name = f"temporal: {kind}" + (f" #{seen[kind]}" if seen[kind] > 1 else "")
        marks[name] = event.event_time.ToNanoseconds() / 1e9
    return marks


def log_marks(service: str, lines: Iterable[str], job_id: str) -> Marks:
    """The first time each message was logged for the job by one service (JSON lines with
    `ts`, `msg` and `job_id`; other lines are skipped)."""
    marks: Marks = {}
    for line in lines:
        if job_id not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("job_id") == job_id:
            marks.setdefault(f"{service}: {record['msg']}", float(record["ts"]))
    return marks


def event_marks(events: Sequence[events_pb2.JobEvent]) -> Marks:
    """The time each state change and the first token carry (stamped by their writer)."""
    marks: Marks = {}
    for event in events:
        stamp = event.create_time.ToNanoseconds() / 1e9
        if event.HasField("state_changed"):
            marks.setdefault(f"log: {event.state_changed.state}", stamp)
        elif event.HasField("token"):
            marks.setdefault("log: first token stamped", stamp)
    return marks


def summary(runs: Sequence[Marks], starts: Sequence[float]) -> list[dict[str, object]]:
    """Per step, ms after each run's start: p50, min, max and in how many runs it was seen;
    ordered by p50."""
    since: dict[str, list[float]] = {}
    for marks, start in zip(runs, starts, strict=True):
        for step, at in marks.items():
            since.setdefault(step, []).append((at - start) * 1000)
    ordered = sorted(since.items(), key=lambda item: pct(item[1], 50))
    return [
        {
            "bench": "timeline",
            "step": step,
            "p50_ms": pct(values, 50),
            "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1),
            "runs": len(values),
        }
        for step, values in ordered
    ]


async def one_job(planner: Planner, temporal: Client) -> tuple[Marks, float, str]:
    """One generate job's marks but its log lines', the time its CreateJob was called, and
    its id (for `log_marks`, read once after the runs)."""
    start = time.time()
    job = await planner.create(generate_job(STREAM_MODEL))
    marks: Marks = {"client: CreateJob returned": time.time()}
    events: list[events_pb2.JobEvent] = []

    def on_event(event: events_pb2.JobEvent) -> None:
        if event.HasField("token") and "client: first token seen" not in marks:
            marks["client: first token seen"] = time.time()
        events.append(event)

    await planner.follow(job.name, on_event)
    marks |= event_marks(events)
    ref = JobRef.from_name(CLIENT, job.name)
    history = await temporal.get_workflow_handle(ref.workflow_id).fetch_history()
    marks |= history_marks(history.events[:HISTORY_EVENTS])
    return marks, start, ref.id


def with_logged(measured: Sequence[tuple[Marks, float, str]], logs: Path) -> list[Marks]:
    """Each job's marks with its services' log lines', each log read once."""
    lines = {service: (logs / f"{service}.log").read_text().splitlines() for service in LOGGED}
    jobs: list[Marks] = []
    for marks, _, job_id in measured:
        logged = dict(marks)
        for service in LOGGED:
            logged |= log_marks(service, lines[service], job_id)
        jobs.append(logged)
    return jobs


async def run(runs: int) -> str:
    """The run's figures as a markdown section."""
    ticks_before = cpu.host_ticks()
    with tempfile.TemporaryDirectory(prefix="sb-bench-timeline-") as tmp:
        up = start_stack(Path(tmp))
        ports = up.ports
        token = stack.read_internal_token(up.state_dir)
        planner = Planner(f"127.0.0.1:{ports.planner}", client_id=CLIENT, internal_token=token)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.inference}")
        try:
            temporal = await Client.connect(f"127.0.0.1:{ports.temporal}")
            inference = inference_pb2_grpc.InferenceServiceStub(channel)
            for n in range(WARM_UP):
                await direct_first_token(inference, n)
                await job_first_token(planner)
            direct = [await direct_first_token(inference, n) for n in range(runs)]
            meter = cpu.Meter(up.state_dir)
            before = meter.snapshot()
            measured = [await one_job(planner, temporal) for _ in range(runs)]
            cost = cpu.per_call(before, meter.snapshot(), runs)
            marks = with_logged(measured, up.state_dir / "logs")
        finally:
            with contextlib.suppress(Exception):
                await planner.close()
                await channel.close(None)
            up.stop()
    rows = summary(marks, [start for _, start, _ in measured])
    stolen = cpu.stolen_share(ticks_before, cpu.host_ticks())
    processes = ", ".join(f"{name} {ms:g}" for name, ms in cost.items())
    return "\n\n".join(
        [
            "## Where a job's first token goes",
            run_line("python -m benchmarks.job_timeline --write docs/benchmarks.md"),
            f"A generate job on `{STREAM_MODEL}` ({STREAM_TOKENS} tokens), one at a time, "
            f"{runs} runs: each step in ms after the CreateJob call (client, event log, "
            "Temporal history and service log clocks of the same machine).",
            markdown_table(rows, "timeline", ["step", "p50_ms", "min_ms", "max_ms", "runs"]),
            f"Inference Generate called directly: first token p50 {pct(direct, 50)} ms. "
            f"The mesh's CPU per job, ms: {processes} (the mesh {cpu.mesh_ms(cost)}). "
            f"The host stole {stolen}% of CPU time during the run.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="jobs, one at a time")
    parser.add_argument("--write", type=Path, help="write the markdown section into this page")
    args = parser.parse_args()
    section = asyncio.run(run(args.runs))
    print(section)
    if args.write:
        write_section(args.write, "job-timeline", section)


if __name__ == "__main__":
    main()
