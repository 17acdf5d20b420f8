"""Jobs benchmark: what the durable-jobs tier costs on top of the inference it drives.

    python -m benchmarks.jobs [--quick] [--write docs/benchmarks.md]

Starts one local mesh with the launcher (the same processes as `switchboard up`) on free
ports and calls the planner's JobService directly, as the edge does:
  (a) CreateJob latency, and whole jobs (create → WatchJob to the end) per second, for a short
      pipeline (`embed` on `test-echo-embed`) at a fixed concurrency;
  (b) time from CreateJob to the first token event on WatchJob, against the inference
      service's Generate to its first token, for the same generation (`test-streamer`);
  (c) event delay from XADD (EventLog.append, from another process) to WatchJob delivery at
      a fixed offered rate, with one and with several watchers.
Prints figures; asserts nothing. With --write, replaces its section of the page.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import timestamp_pb2
from valkey.asyncio import Valkey

from benchmarks.report import markdown_table, run_line, write_section
from switchboard.api.inference.v1 import inference_pb2 as ipb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.client import JobsClient
from switchboard.common.jobref import JobRef
from switchboard.launcher import background, stack
from switchboard.launcher.ports import free_block
from switchboard.planner.stores.events import EventLog

from .figures import Figures, pct, warm_up_calls

if TYPE_CHECKING:  # the async stub types exist only in the generated stubs
    InferenceStub = inference_pb2_grpc.InferenceServiceAsyncStub

CLIENT = "bench"
EMBED_MODEL = "test-echo-embed"
STREAM_MODEL = "test-streamer"
PROMPT = "one two three four five six seven eight"
STREAM_TOKENS = 8
DIRECT = "inference Generate (direct)"
PRODUCER_CONNECTIONS = 32  # XADDs in flight at once
# (offered events/s, watchers): one watcher at 1k and 10k/s, and a fan-out to 10 watchers.
EVENT_RUNS = ((1000, 1), (10000, 1), (200, 10))


class Planner(JobsClient):
    """The planner as the benchmarks call it: the client, which sets the client id, the
    internal token, x-job-id and traceparent on every call."""

    async def follow(
        self, name: str, on_event: Callable[[events_pb2.JobEvent], None] = lambda e: None
    ) -> None:
        """Reads the job's events until WatchJob ends (after the terminal event)."""
        async for event in self.watch(name):
            on_event(event)


def _embed_job() -> jobs_pb2.Job:
    embed = pipelines_pb2.EmbedInput(model=EMBED_MODEL, texts=["a short text to embed"])
    return jobs_pb2.Job(pipeline="embed", input=pipelines_pb2.JobInput(embed=embed))


def generate_job(model: str) -> jobs_pb2.Job:
    params = ipb.SamplingParams(max_tokens=STREAM_TOKENS)
    generate = pipelines_pb2.GenerateInput(model=model, prompt=PROMPT, params=params)
    return jobs_pb2.Job(pipeline="generate", input=pipelines_pb2.JobInput(generate=generate))


# --- (a) create latency and jobs/s ---------------------------------------------------------


async def measure_jobs(figures: Figures, planner: Planner, concurrency: int, total: int) -> None:
    creates: list[float] = []
    whole: list[float] = []
    remaining = warm_up_calls(concurrency)

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            job = await planner.create(_embed_job())
            creates.append((time.perf_counter() - start) * 1000)
            await planner.follow(job.name)
            whole.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    remaining = total
    creates.clear()
    whole.clear()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    figures.add(
        bench="jobs-create",
        pipeline=f"embed ({EMBED_MODEL})",
        concurrency=concurrency,
        jobs=len(whole),
        create_p50_ms=pct(creates, 50),
        create_p99_ms=pct(creates, 99),
        job_p50_ms=pct(whole, 50),
        job_p99_ms=pct(whole, 99),
        jobs_per_s=round(len(whole) / elapsed, 1),
    )


# --- (b) first token: through a job vs the inference service directly -----------------------


async def job_first_token(planner: Planner, creates: list[float] | None = None) -> float:
    """ms from CreateJob to the first token event; the create call's own ms go to `creates`."""
    start = time.perf_counter()
    job = await planner.create(generate_job(STREAM_MODEL))
    if creates is not None:
        creates.append((time.perf_counter() - start) * 1000)
    first = 0.0

    def on_event(event: events_pb2.JobEvent) -> None:
        nonlocal first
        if event.HasField("token") and not first:
            first = time.perf_counter() - start

    await planner.follow(job.name, on_event)
    return first * 1000


async def direct_first_token(inference: InferenceStub, n: int) -> float:
    params = ipb.SamplingParams(max_tokens=STREAM_TOKENS)
    start_msg = ipb.GenerateStart(model=STREAM_MODEL, prompt=PROMPT, params=params)
    request = ipb.GenerateRequest(request_id=f"bench-{uuid.uuid4().hex}-{n}", start=start_msg)
    start = time.perf_counter()
    first = 0.0
    call = inference.Generate(iter([request]))
    async for reply in call:
        if reply.HasField("delta") and not first:
            first = time.perf_counter() - start
        if reply.HasField("done") or reply.HasField("error"):
            break
    return first * 1000


async def measure_first_token(
    figures: Figures, planner: Planner, inference: InferenceStub, runs: int
) -> None:
    creates: list[float] = []
    paths: dict[str, Callable[[int], Awaitable[float]]] = {
        DIRECT: lambda n: direct_first_token(inference, n),
        "CreateJob → WatchJob": lambda n: job_first_token(planner, creates),
    }
    for path, once in paths.items():
        for n in range(3):
            await once(n)  # warm-up
        creates.clear()
        firsts = [await once(n) for n in range(runs)]
        # The job path's create calls, one job at a time: CreateJob without a queue.
        alone = {"create_p50_ms": pct(creates, 50)} if creates else {}
        figures.add(
            bench="jobs-ttft",
            model=STREAM_MODEL,
            path=path,
            runs=runs,
            ttft_p50_ms=pct(firsts, 50),
            ttft_p90_ms=pct(firsts, 90),
            **alone,
        )


# --- (c) event delay, XADD → WatchJob ------------------------------------------------------


def produce(valkey_url: str, wid: str, rate: int, seconds: float) -> tuple[int, float]:
    """In another process: appends token events at `rate` per second; (sent, elapsed s)."""
    return asyncio.run(_produce(valkey_url, wid, rate, seconds))


async def _produce(valkey_url: str, wid: str, rate: int, seconds: float) -> tuple[int, float]:
    client = Valkey.from_url(valkey_url)
    log, ref = EventLog(client), JobRef.from_workflow_id(wid)
    name = ref.name
    sent = 0
    in_flight = asyncio.Semaphore(PRODUCER_CONNECTIONS)

    async def one(index: int) -> None:
        async with in_flight:  # stamped when its XADD is sent, not while it waits here
            stamp = timestamp_pb2.Timestamp()
            stamp.FromNanoseconds(time.time_ns())
            token = events_pb2.TokenDelta(text="x", index=index, stage="bench")
            await log.append(ref, events_pb2.JobEvent(job=name, create_time=stamp, token=token))

    start = time.perf_counter()
    try:
        while (elapsed := time.perf_counter() - start) < seconds:
            due = min(int(elapsed * rate) + 1, int(seconds * rate))
            batch = [one(i) for i in range(sent, due)]
            sent = due
            await asyncio.gather(*batch)
            await asyncio.sleep(0.002)
        return sent, time.perf_counter() - start
    finally:
        await client.aclose()


async def measure_events(
    figures: Figures,
    planner: Planner,
    pool: concurrent.futures.Executor,
    valkey_url: str,
    rate: int,
    watchers: int,
    seconds: float,
) -> None:
    # A job that stays RUNNING (its model never answers) keeps WatchJob open meanwhile.
    job = await planner.create(generate_job("test-hang"))
    delays: list[list[float]] = [[] for _ in range(watchers)]
    arrivals: list[float] = []
    gaps = 0

    def recorder(mine: list[float]) -> Callable[[events_pb2.JobEvent], None]:
        def on_event(event: events_pb2.JobEvent) -> None:
            nonlocal gaps
            gaps += event.HasField("gap")
            if event.HasField("token") and event.token.stage == "bench":
                mine.append((time.time_ns() - event.create_time.ToNanoseconds()) / 1e6)
                arrivals.append(time.perf_counter())

        return on_event

    follows = [asyncio.create_task(planner.follow(job.name, recorder(d))) for d in delays]
    await asyncio.sleep(1.0)  # every watcher is live before the first event
    wid = JobRef.from_name(CLIENT, job.name).workflow_id
    loop = asyncio.get_running_loop()
    sent, elapsed = await loop.run_in_executor(pool, produce, valkey_url, wid, rate, seconds)
    await asyncio.sleep(1.0)  # the last events arrive
    await planner.cancel(job.name)
    await asyncio.wait_for(asyncio.gather(*follows), 60)
    everything = [d for mine in delays for d in mine]
    figures.add(
        bench="jobs-events",
        offered_per_s=rate,
        watchers=watchers,
        sent_per_s=round(sent / elapsed),
        delivered=f"{len(everything)} of {sent * watchers}",
        gaps=gaps,
        delivered_per_s=round(len(arrivals) / max(arrivals[-1] - arrivals[0], 1e-9)),
        delay_p50_ms=pct(everything, 50),
        delay_p99_ms=pct(everything, 99),
    )


# --- the run --------------------------------------------------------------------------------


async def run(quick: bool) -> list[dict[str, Any]]:
    figures = Figures([])
    ports = free_block()
    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="sb-bench-jobs-") as tmp,
        concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool,
    ):
        running = background.start(Path(tmp), ports)
        token = stack.read_internal_token(Path(tmp))
        planner = Planner(f"127.0.0.1:{ports.planner}", client_id=CLIENT, internal_token=token)
        inference_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.inference}")
        try:
            inference = inference_pb2_grpc.InferenceServiceStub(inference_channel)
            await measure_jobs(figures, planner, 8, 100 if quick else 400)
            await measure_first_token(figures, planner, inference, 10 if quick else 30)
            valkey_url = f"valkey://127.0.0.1:{ports.valkey}/0"
            seconds = 3.0 if quick else 6.0
            for rate, watchers in EVENT_RUNS:
                await measure_events(figures, planner, pool, valkey_url, rate, watchers, seconds)
        finally:
            await planner.close()
            await inference_channel.close(None)
            running.stop()
    return figures.rows


def jobs_markdown(rows: list[dict[str, Any]]) -> str:
    ttft = {r["path"]: r for r in rows if r["bench"] == "jobs-ttft"}
    direct = ttft.get(DIRECT)
    ratios = [
        f"- {path}: p50 {r['ttft_p50_ms'] / direct['ttft_p50_ms']:.1f}x the direct call"
        f" (+{r['ttft_p50_ms'] - direct['ttft_p50_ms']:.0f} ms)"
        for path, r in ttft.items()
        if direct is not None and path != DIRECT and direct["ttft_p50_ms"]
    ]
    create_columns = ["pipeline", "concurrency", "jobs", "create_p50_ms", "create_p99_ms",
                      "job_p50_ms", "job_p99_ms", "jobs_per_s"]  # fmt: skip
    ttft_columns = ["model", "path", "runs", "ttft_p50_ms", "ttft_p90_ms"]
    event_columns = ["offered_per_s", "watchers", "sent_per_s", "delivered", "gaps",
                     "delivered_per_s", "delay_p50_ms", "delay_p99_ms"]  # fmt: skip
    return "\n\n".join(
        [
            "## Jobs (planner, Temporal, worker, event log)",
            run_line("python -m benchmarks.jobs --write docs/benchmarks.md"),
            "### Create latency and whole jobs per second",
            markdown_table(rows, "jobs-create", create_columns),
            "`create`: the CreateJob call. `job`: from CreateJob until WatchJob has delivered"
            " the terminal event.",
            "### Time to first token: through a job vs the inference service",
            markdown_table(rows, "jobs-ttft", ttft_columns),
            "Against the direct call in the same run:\n" + "\n".join(ratios),
            "### Event delay, XADD to WatchJob delivery",
            markdown_table(rows, "jobs-events", event_columns),
            "Token events appended with `EventLog.append` by another process at the offered"
            " rate (`sent_per_s`: what it achieved) while WatchJob streams read the job from the"
            " planner; the delay runs from the event's create_time (set just before its XADD)"
            " to its arrival at the watcher. A watcher more than the log's 10,000 entries"
            " behind loses the trimmed ones and is told so by a `gap` event.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument("--write", type=Path, help="write the markdown section into this page")
    args = parser.parse_args()
    section = jobs_markdown(asyncio.run(run(args.quick)))
    print(section)
    if args.write:
        write_section(args.write, "jobs", section)


if __name__ == "__main__":
    main()
