"""The SSE halves of the edge benchmark (benchmarks.edge): events per second through SSE
against WatchJob read directly, and idle streams held by one edge process; and the mesh
under test, which every part drives."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.client import JobsClient
from switchboard.common.jobref import JobRef
from switchboard.launcher.ports import Ports
from switchboard.launcher.supervisor import read_state
from switchboard.planner.stores.events import EventLog

CLIENT = "bench"
HANG_JOBS = 20
OPEN_CONCURRENCY = 64
Row = dict[str, Any]


@dataclass
class Mesh:
    ports: Ports
    state_dir: Path
    key: str
    planner: JobsClient
    valkey: Valkey

    def pid(self, name: str) -> int:
        state = read_state(self.state_dir) or {}
        processes: dict[str, dict[str, Any]] = state["processes"]  # type: ignore[assignment]
        return int(processes[name]["pid"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def create(self, model: str, max_tokens: int = 0) -> str:
        params = inference_pb2.SamplingParams(max_tokens=max_tokens)
        generate = pipelines_pb2.GenerateInput(model=model, prompt="bench the edge", params=params)
        job = jobs_pb2.Job(pipeline="generate", input=pipelines_pb2.JobInput(generate=generate))
        created = await self.planner.create(job)
        return JobRef.from_name(CLIENT, created.name).id

    async def until_state(self, job_id: str, state: jobs_pb2.Job.State.ValueType) -> None:
        for _ in range(600):
            if (await self.planner.get(JobRef(CLIENT, job_id))).state == state:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"job {job_id} never reached {jobs_pb2.Job.State.Name(state)}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- (b) events per second: SSE through Envoy + edge vs WatchJob directly --------------------

TOKEN_FRAME = b"event: token\n"


Span = tuple[float, float]  # when the first and the last awaited event arrived


async def read_sse(mesh: Mesh, job_id: str, count: int, live: asyncio.Event) -> Span:
    """Reads the job's SSE stream through Envoy until `count` token events."""
    seen, tail, first = 0, b"", 0.0
    url = f"http://127.0.0.1:{mesh.ports.public}/v1/jobs/{job_id}/events"
    async with (
        httpx.AsyncClient(headers=mesh.auth, timeout=120) as http,
        http.stream("GET", url) as stream,
    ):
        async for chunk in stream.aiter_raw():
            first = first or time.perf_counter()
            live.set()  # the stream is open: a live writer may start
            data = tail + chunk
            seen += data.count(TOKEN_FRAME)
            tail = data[-(len(TOKEN_FRAME) - 1) :]
            if seen >= count:
                return first, time.perf_counter()
    raise RuntimeError(f"stream ended after {seen} of {count} token events")


async def read_direct(mesh: Mesh, job_id: str, count: int, live: asyncio.Event) -> Span:
    seen, first = 0, 0.0
    async with asyncio.timeout(120):
        async for event in mesh.planner.watch(JobRef(CLIENT, job_id)):
            first = first or time.perf_counter()
            live.set()
            seen += event.HasField("token")
            if seen >= count:
                return first, time.perf_counter()
    raise RuntimeError(f"watch ended after {seen} of {count} token events")


def token(name: str, index: int) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(job=name, token=events_pb2.TokenDelta(text="tok ", index=index))


async def write_tokens(mesh: Mesh, job_id: str, count: int) -> float:
    """Appends `count` token events to the job's log, 100 at a time; the writer's events/s."""
    log, ref = EventLog(mesh.valkey), JobRef(CLIENT, job_id)
    name = JobRef(CLIENT, job_id).name
    start = time.perf_counter()
    for first in range(0, count, 100):
        batch = range(first, min(first + 100, count))
        await asyncio.gather(*(log.append(ref, token(name, i)) for i in batch))
    return count / (time.perf_counter() - start)


Reader = Callable[[Mesh, str, int, asyncio.Event], Coroutine[Any, Any, Span]]
RUNS = 3
PATHS: dict[str, Reader] = {"WatchJob direct": read_direct, "SSE via Envoy + edge": read_sse}


async def one_run(mesh: Mesh, mode: str, reader: Reader, count: int) -> tuple[float, float]:
    """(events/s read, events/s written) for a fresh running job. `stored`: the events are
    in the log before the reader opens, timed from its first event (replay); `live`: they
    are written while it reads, timed from the first write."""
    job_id = await mesh.create("test-hang")
    await mesh.until_state(job_id, jobs_pb2.Job.RUNNING)
    live = asyncio.Event()
    if mode == "stored":
        written = await write_tokens(mesh, job_id, count)
        first, last = await reader(mesh, job_id, count, live)
        return count / (last - first), written
    reading = asyncio.create_task(reader(mesh, job_id, count, live))
    await asyncio.wait_for(live.wait(), 30)
    start = time.perf_counter()
    written = await write_tokens(mesh, job_id, count)
    _, last = await reading
    return count / (last - start), written


async def measure_throughput(mesh: Mesh, rows: list[Row], count: int) -> None:
    """Each figure is the median of RUNS runs, each on its own job."""
    for mode in ("stored", "live"):
        rates: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
        for _ in range(RUNS):  # alternating, so a busy moment hits both paths alike
            for path, reader in PATHS.items():
                rates[path].append(await one_run(mesh, mode, reader, count))
        for path, runs in rates.items():
            rows.append(
                {
                    "bench": "edge-events",
                    "mode": mode,
                    "path": path,
                    "events": count,
                    "runs": len(runs),
                    "per_s": round(statistics.median(r for r, _ in runs)),
                    "writer_per_s": round(statistics.median(w for _, w in runs)),
                }
            )
            print(rows[-1], flush=True)
        sse, direct = rows[-1], rows[-2]
        sse["vs_direct"] = f"{sse['per_s'] / direct['per_s']:.2f}x"


# --- (a) idle SSE streams held by one edge process ------------------------------------------


async def open_stream(port: int, path: str, key: str) -> asyncio.StreamWriter:
    """A raw HTTP/1.1 SSE request, read up to the end of the headers; kept open, unread."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    status = await asyncio.wait_for(reader.readline(), 60)
    if b" 200 " not in status:
        writer.close()
        raise RuntimeError(f"stream refused: {status.decode().strip()}")
    while (await asyncio.wait_for(reader.readline(), 60)) not in (b"\r\n", b""):
        pass
    return writer


async def open_streams(
    port: int, paths: list[str], key: str
) -> tuple[list[asyncio.StreamWriter], str, float]:
    """Opens one stream per path, OPEN_CONCURRENCY at a time: (writers, failure, seconds)."""
    writers: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(path: str) -> None:
        async with gate:
            writers.append(await open_stream(port, path, key))

    start = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in paths), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    failure = f"{len(errors)} failed, first: {errors[0]!r}"[:200] if errors else ""
    return writers, failure, time.perf_counter() - start


async def measure_idle_streams(mesh: Mesh, rows: list[Row], counts: list[int]) -> None:
    jobs = [await mesh.create("test-hang") for _ in range(HANG_JOBS)]
    for job_id in jobs:
        await mesh.until_state(job_id, jobs_pb2.Job.RUNNING)
    edge, planner = mesh.pid("edge"), mesh.pid("planner")
    for n in counts:
        await asyncio.sleep(3)  # let the previous round's streams be gone
        edge0, planner0, fds0 = rss_kib(edge), rss_kib(planner), open_fds(edge)
        paths = [f"/v1/jobs/{jobs[i % len(jobs)]}/events" for i in range(n)]
        writers, failure, opened_s = await open_streams(mesh.ports.edge, paths, mesh.key)
        await asyncio.sleep(5)  # heartbeats and buffers settle
        edge1, planner1, fds1 = rss_kib(edge), rss_kib(planner), open_fds(edge)
        opened = len(writers)
        rows.append(
            {
                "bench": "edge-idle-streams",
                "streams": n,
                "opened": opened,
                "open_s": round(opened_s, 1),
                "edge_rss_mib": f"{edge0 / 1024:.0f} -> {edge1 / 1024:.0f}",
                "edge_kib_per_stream": round((edge1 - edge0) / max(opened, 1), 1),
                "planner_kib_per_stream": round((planner1 - planner0) / max(opened, 1), 1),
                "edge_fds_per_stream": round((fds1 - fds0) / max(opened, 1), 2),
                "limit_hit": failure or "none",
            }
        )
        print(rows[-1], flush=True)
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
