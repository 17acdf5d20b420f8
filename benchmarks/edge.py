"""Edge benchmark: idle SSE streams one edge process holds, events per second through SSE
against WatchJob read directly, and the latency Envoy + edge add to a unary call.

    python -m benchmarks.edge [--quick] [--write docs/benchmarks.md]

Starts one local mesh with the launcher on free ports (the same processes as `switchboard
up`), as client `bench` with a key made the way `switchboard keys create` makes one and a
rate limit high enough never to refuse (so every request still runs the limiter's script).
Idle streams follow jobs on `test-hang`, which stay RUNNING; throughput reads token events
written straight into a job's log with the planner's EventLog (benchmarks.edge_streams).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from valkey.asyncio import Valkey

from benchmarks.edge_streams import (
    CLIENT,
    HANG_JOBS,
    Mesh,
    Row,
    measure_idle_streams,
    measure_throughput,
)
from benchmarks.figures import pct
from benchmarks.report import markdown_table, run_line, write_section
from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.client import JobsClient
from switchboard.common.jobref import JobRef
from switchboard.edge.keys import KeyStore
from switchboard.launcher import background, stack
from switchboard.launcher.ports import free_block

# Hang jobs must outlive the run; the limiter must run but never refuse.
STACK_ENV = {
    "SWITCHBOARD_INFERENCE_FIRST_TOKEN_TIMEOUT_S": "3600",
    "SWITCHBOARD_INFERENCE_GENERATION_TIMEOUT_S": "3600",
    "SWITCHBOARD_EDGE_RATE_LIMIT_CLIENTS": f"{CLIENT}=100000:100000",
}

# --- (c) the latency Envoy + edge add to a unary call ---------------------------------------


async def measure_unary(mesh: Mesh, rows: list[Row], n: int) -> None:
    job_id = await mesh.create("test-streamer", max_tokens=2)
    await mesh.until_state(job_id, jobs_pb2.Job.SUCCEEDED)
    job = JobRef(CLIENT, job_id)
    async with httpx.AsyncClient(headers=mesh.auth, timeout=30) as http:

        def rest(port: int) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                answer = await http.get(f"http://127.0.0.1:{port}/v1/jobs/{job_id}")
                assert answer.status_code == 200, answer.text

            return call

        async def direct() -> None:
            await mesh.planner.get(job)

        paths = {
            "planner gRPC direct": direct,
            "edge direct (edge -> Envoy gRPC -> planner)": rest(mesh.ports.edge),
            "Envoy public -> edge -> Envoy gRPC -> planner": rest(mesh.ports.public),
        }
        seconds: dict[str, list[float]] = {path: [] for path in paths}
        for _ in range(5):  # rounds, so drift on a shared machine hits every path alike
            for path, call in paths.items():
                for i in range(n // 5 + 10):
                    start = time.perf_counter()
                    await call()
                    if i >= 10:  # the first calls of a round warm it up
                        seconds[path].append((time.perf_counter() - start) * 1000)
    base = seconds["planner gRPC direct"]
    for path, ms in seconds.items():
        rows.append(
            {
                "bench": "edge-unary",
                "path": path,
                "calls": len(ms),
                "p50_ms": pct(ms, 50),
                "p99_ms": pct(ms, 99),
                "added_p50_ms": round(pct(ms, 50) - pct(base, 50), 2),
                "added_p99_ms": round(pct(ms, 99) - pct(base, 99), 2),
            }
        )
        print(rows[-1], flush=True)


# --- the run --------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    fd_limit = raise_fd_limit()  # the stack's processes inherit it
    load_before = os.getloadavg()[0]
    os.environ.update(STACK_ENV)
    ports = free_block()
    with tempfile.TemporaryDirectory(prefix="sb-bench-edge-") as tmp:
        up = background.start(Path(tmp), ports)
        valkey = Valkey.from_url(f"valkey://127.0.0.1:{ports.valkey}/0")
        token = stack.read_internal_token(Path(tmp))
        planner = JobsClient(f"127.0.0.1:{ports.planner}", client_id=CLIENT, internal_token=token)
        try:
            key, _ = await KeyStore(valkey).create(CLIENT)
            mesh = Mesh(ports, Path(tmp), key, planner, valkey)
            await measure_unary(mesh, rows, 500 if quick else 2000)
            await measure_throughput(mesh, rows, 2000 if quick else 8000)
            await measure_idle_streams(mesh, rows, [200, 1000] if quick else [1000, 5000])
        finally:
            with contextlib.suppress(Exception):
                await planner.close()
                await valkey.aclose()
            up.stop()
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    rows.append({"bench": "edge-env", "fd_soft_limit": fd_limit, "load": load})
    return rows


def report(rows: list[Row]) -> str:
    env = next(r for r in rows if r["bench"] == "edge-env")
    fd_limit = env["fd_soft_limit"]
    return "\n\n".join(
        [
            "## Edge",
            run_line("python -m benchmarks.edge --write docs/benchmarks.md")
            + f" One-minute load average {env['load']}: above about 2, other work on the "
            "machine inflated the latencies and lowered the rates.",
            "### Unary call: `GET /v1/jobs/{id}` against the planner's `GetJob` directly",
            "A finished job (its lookup is one Temporal describe on every path); sequential "
            "calls; the edge's share includes its API-key check (cached) and one rate-limit "
            "script run in Valkey.",
            markdown_table(
                rows,
                "edge-unary",
                ["path", "calls", "p50_ms", "p99_ms", "added_p50_ms", "added_p99_ms"],
            ),
            "### Events per second: one job's token events, SSE against WatchJob",
            "Token events appended to a running job's log with the planner's EventLog; "
            "`stored`: written before the reader opens and timed from its first event "
            "(replay), `live`: written while it reads and timed from the first write (bounded "
            "by the writer, which shares the 2 cores, when `per_s` nears `writer_per_s`). "
            "Medians of the runs, each on a fresh job.",
            markdown_table(
                rows,
                "edge-events",
                ["mode", "path", "events", "runs", "per_s", "writer_per_s", "vs_direct"],
            ),
            "### Idle SSE streams held by one edge process",
            f"Streams opened straight to one edge replica on {HANG_JOBS} running `test-hang` "
            f"jobs and held idle (heartbeats only); file-descriptor soft limit {fd_limit}. "
            "Memory from VmRSS before and after, per stream opened. The edge's hub shares one "
            "upstream WatchJob per job among its subscribers, so the planner's share is per "
            "job, not per stream.",
            markdown_table(
                rows,
                "edge-idle-streams",
                [
                    "streams",
                    "opened",
                    "open_s",
                    "edge_rss_mib",
                    "edge_kib_per_stream",
                    "edge_fds_per_stream",
                    "planner_kib_per_stream",
                    "limit_hit",
                ],
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls and streams")
    parser.add_argument("--write", type=Path, help="write the Edge section into this page")
    args = parser.parse_args()
    text = report(asyncio.run(run(args.quick)))
    print(text)
    if args.write:
        write_section(args.write, "edge", text)


if __name__ == "__main__":
    main()
