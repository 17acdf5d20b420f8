"""Jobs benchmark at the level a user meets them: REST and SSE through Envoy, against the
interactive OpenAI routes, and the gRPC figures of benchmarks.jobs beside them, in one run.

    python -m benchmarks.jobs_rest [--quick] [--json rows.json] [--write docs/benchmarks.md]

Starts one local mesh with the launcher on free ports (the same processes as `switchboard
up`), as client `bench` with a key made the way `switchboard keys create` makes one and a rate
limit that never refuses (as benchmarks.edge does), and measures:
  (a) time to first token on `test-streamer`: `/v1/chat/completions` streamed against
      `POST /v1/jobs` then its SSE events, and inference Generate against CreateJob then
      WatchJob (benchmarks.jobs);
  (b) one text through `test-echo-embed` at concurrency 8: `/v1/embeddings` against embed
      jobs with `Prefer: wait`, with an SSE follower, and over gRPC (CreateJob → WatchJob);
  (c) the create call's latency in (b), REST and gRPC;
  (d) how long after the terminal event is stored in the event log its `Prefer: wait`
      answer and its SSE followers get it (the event's cursor is Valkey's clock at XADD).
Prints figures; asserts nothing. --json keeps the rows for benchmarks.jobs_rest_report,
which writes before/after tables; --write replaces this benchmark's section of the page.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
from valkey.asyncio import Valkey

from benchmarks import cpu
from benchmarks import rest_paths as rest
from benchmarks.edge import STACK_ENV
from benchmarks.figures import Figures, Loop, pct, warm_up_calls
from benchmarks.jobs import CLIENT, Planner, measure_first_token, measure_jobs
from benchmarks.jobs_rest_report import jobs_rest_markdown
from benchmarks.report import write_section
from benchmarks.sse import TERMINAL_STATES, added, ratio, since_stored_ms
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.edge.keys import KeyStore
from switchboard.launcher import background, stack
from switchboard.launcher.ports import free_block

if TYPE_CHECKING:  # the async stub types exist only in the generated stubs
    from benchmarks.jobs import InferenceStub

Row = dict[str, Any]
CONCURRENCY = 8
CHAT_STREAM = "/v1/chat/completions, stream"
JOB_SSE = "POST /v1/jobs → GET …/events (SSE)"
EMBEDDINGS = "/v1/embeddings"
GRPC_JOBS = "CreateJob → WatchJob (gRPC)"


def _row(bench: str, path: str, ms: list[float], **more: Any) -> Row:
    row = {"bench": bench, "path": path, "n": len(ms), "p50_ms": pct(ms, 50)}
    row |= {"p90_ms": pct(ms, 90), "p99_ms": pct(ms, 99)} | more
    print(json.dumps(row), flush=True)
    return row


def _against(rows: list[Row], base: Row, key: str) -> None:
    """Each row's `key` against the base row's, as `vs_direct` (and the ms it adds)."""
    for row in rows:
        row["vs_direct"] = ratio(row[key], base[key])
        if key == "p50_ms":
            row["added_p50_ms"] = added(row[key], base[key])


# --- (a) time to first token ---------------------------------------------------------------


async def measure_ttft(
    rows: list[Row], planner: Planner, inference: InferenceStub, http: httpx.AsyncClient, runs: int
) -> list[float]:
    """Both levels; returns the SSE followers' terminal-event delays."""
    grpc_rows = Figures([])
    await measure_first_token(grpc_rows, planner, inference, runs)
    level = [
        {"bench": "ttft", "level": "gRPC", "path": r["path"], "n": r["runs"]}
        | {"p50_ms": r["ttft_p50_ms"], "p90_ms": r["ttft_p90_ms"]}
        for r in grpc_rows.rows
    ]
    _against(level, level[0], "p50_ms")
    job_path = grpc_rows.rows[-1]
    rows.append(
        {"bench": "create", "path": "CreateJob (gRPC, one at a time)", "n": job_path["runs"]}
        | {"p50_ms": job_path["create_p50_ms"]}
    )
    chat: list[float] = []
    followed: list[rest.Followed] = []
    for n in range(runs + 3):  # alternating, so a busy moment hits both paths alike
        first, job = await rest.chat_first_token(http), await rest.job_first_token(http)
        if n >= 3:  # the first runs warm up
            chat.append(first)
            followed.append(job)
    by_rest = [
        _row("ttft", CHAT_STREAM, chat, level="REST"),
        _row("ttft", JOB_SSE, [f.first_token_ms for f in followed], level="REST"),
    ]
    _against(by_rest, by_rest[0], "p50_ms")
    rows += level + by_rest
    return [f.terminal_ms for f in followed]


# --- (b, c) throughput and create latency --------------------------------------------------


async def measure_throughput(
    rows: list[Row],
    planner: Planner,
    http: httpx.AsyncClient,
    calls: int,
    jobs: int,
    meter: cpu.Meter,
) -> tuple[list[rest.Waited], list[float]]:
    """The four paths at CONCURRENCY, and the mesh's CPU per call in each loop; returns the
    `Prefer: wait` answers and the SSE followers' terminal-event delays."""
    loops: dict[str, Loop] = {}
    costs: dict[str, dict[str, float]] = {}
    # Both kinds of loop warm up first; the warm-up's CPU is counted, and its calls with it.
    warm_up = warm_up_calls(CONCURRENCY)

    async def timed(path: str, total: int, once: Callable[[], Awaitable[None]]) -> None:
        before = meter.snapshot()
        loops[path] = await rest.closed_loop(CONCURRENCY, total, once)
        costs[path] = cpu.per_call(before, meter.snapshot(), total + warm_up)

    await timed(EMBEDDINGS, calls, lambda: rest.embeddings(http))
    waited: list[rest.Waited] = []

    async def wait_one() -> None:
        waited.append(await rest.wait_job(http))

    await timed(f"POST /v1/jobs, Prefer: wait={rest.WAIT_SECONDS}", jobs, wait_one)
    creates: list[float] = []
    followed: list[float] = []

    async def follow_one() -> None:
        start = time.perf_counter()
        job_id, create_ms = await rest.create_job(http, rest.embed_job_body())
        creates.append(create_ms)
        followed.append((await rest.follow_events(http, job_id, start)).terminal_ms)

    await timed("POST /v1/jobs, then SSE to the end", jobs, follow_one)
    grpc_rows = Figures([])
    before = meter.snapshot()
    await measure_jobs(grpc_rows, planner, CONCURRENCY, jobs)
    by_grpc = grpc_rows.rows[0]
    grpc_cost = cpu.per_call(before, meter.snapshot(), by_grpc["jobs"] + warm_up)
    through = [
        _row("throughput", path, loop.ms, per_s=loop.per_s, concurrency=CONCURRENCY)
        for path, loop in loops.items()
    ]
    through[1]["late"] = sum(not w.finished for w in waited[-jobs:])
    through.append(
        {"bench": "throughput", "path": GRPC_JOBS, "n": by_grpc["jobs"]}
        | {"concurrency": CONCURRENCY, "p50_ms": by_grpc["job_p50_ms"]}
        | {"p99_ms": by_grpc["job_p99_ms"], "per_s": by_grpc["jobs_per_s"]}
    )
    _against(through, through[0], "per_s")
    rows += through
    for path, cost in (costs | {GRPC_JOBS: grpc_cost}).items():
        rows.append(cpu.cpu_row(path, cost))
        print(json.dumps(rows[-1]), flush=True)
    rows.append(_row("create", "POST /v1/jobs (REST)", creates[-jobs:]))
    grpc_create = {"bench": "create", "path": "CreateJob (gRPC)", "n": by_grpc["jobs"]}
    rows.append(
        grpc_create | {"p50_ms": by_grpc["create_p50_ms"], "p99_ms": by_grpc["create_p99_ms"]}
    )
    return waited[-jobs:], followed[-jobs:]


# --- (d) terminal event to the answer -------------------------------------------------------


async def terminal_cursor(planner: Planner, job_id: str) -> str:
    """The cursor of the job's terminal state change, read back after the job ended."""
    async for event in planner.watch(job_id):
        if event.HasField("state_changed") and event.state_changed.state in TERMINAL_STATES:
            return event.cursor
    raise rest.BenchFailed(f"job {job_id}: no terminal event in its log")


async def measure_terminal(
    rows: list[Row],
    planner: Planner,
    waited: list[rest.Waited],
    followers: dict[str, list[float]],
) -> None:
    delays = [
        since_stored_ms(await terminal_cursor(planner, w.job_id), w.arrival_ns)
        for w in waited
        if w.finished  # a 202 came before the end
    ]
    rows.append(_row("terminal", f"POST /v1/jobs, Prefer: wait (embed, c={CONCURRENCY})", delays))
    for path, delays_ms in followers.items():
        rows.append(_row("terminal", path, delays_ms))


# --- the run --------------------------------------------------------------------------------


def _commit() -> str:
    """The checkout's commit, `+` when its tracked files differ from it."""
    git = ["git", "-C", str(Path.cwd())]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "services"], check=False)
    return head.stdout.strip() + ("+" if dirty.returncode else "")


def start_stack(tmp: Path, attempts: int = 3) -> background.Background:
    """The mesh on a free block of ports; another block when another stack took some of
    these between the check and the start (benchmarks and test runs share the machine)."""
    for attempt in range(1, attempts + 1):
        try:
            return background.start(tmp / f"stack-{attempt}", free_block())
        except background.StackFailed as exc:
            if "ports in use" not in str(exc) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


async def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    load_before, ticks_before = os.getloadavg()[0], cpu.host_ticks()
    os.environ.update(STACK_ENV | {"SWITCHBOARD_EDGE_MAX_WAIT_SECONDS": str(rest.WAIT_SECONDS)})
    with tempfile.TemporaryDirectory(prefix="sb-bench-jobs-rest-") as tmp:
        up = start_stack(Path(tmp))
        ports = up.ports
        valkey = Valkey.from_url(f"valkey://127.0.0.1:{ports.valkey}/0")
        token = stack.read_internal_token(up.state_dir)
        planner = Planner(f"127.0.0.1:{ports.planner}", client_id=CLIENT, internal_token=token)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.inference}")
        try:
            key, _ = await KeyStore(valkey).create(CLIENT)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ports.public}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
                limits=httpx.Limits(max_connections=4 * CONCURRENCY),
            ) as http:
                inference = inference_pb2_grpc.InferenceServiceStub(channel)
                generate = await measure_ttft(rows, planner, inference, http, 10 if quick else 30)
                jobs = 80 if quick else 240
                waited, embed = await measure_throughput(
                    rows, planner, http, 10 * jobs, jobs, cpu.Meter(up.state_dir)
                )
                followers = {
                    "SSE follower (generate, one job at a time)": generate,
                    f"SSE follower (embed, c={CONCURRENCY})": embed,
                }
                await measure_terminal(rows, planner, waited, followers)
        finally:
            with contextlib.suppress(Exception):
                await planner.close()
                await channel.close(None)
                await valkey.aclose()
            up.stop()
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    load += f"; {cpu.stolen_share(ticks_before, cpu.host_ticks())}% of CPU time stolen by the host"
    rows.append({"bench": "env", "load": load, "commit": _commit(), "quick": quick})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs and jobs")
    parser.add_argument("--json", type=Path, help="keep the rows in this file")
    parser.add_argument("--write", type=Path, help="write the markdown section into this page")
    args = parser.parse_args()
    rows = asyncio.run(run(args.quick))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    section = jobs_rest_markdown(rows)
    print(section)
    if args.write:
        write_section(args.write, "jobs-rest", section)


if __name__ == "__main__":
    main()
