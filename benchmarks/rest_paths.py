"""The REST calls of the REST jobs benchmark (benchmarks.jobs_rest), each as a user makes it
through Envoy's public listener with an API key: the interactive OpenAI routes and the job
API, with `Prefer: wait` and with an SSE follower. Each returns what it timed."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from benchmarks import figures
from benchmarks.figures import Loop
from benchmarks.sse import FrameReader, is_terminal, since_stored_ms

EMBED_MODEL = "test-echo-embed"
STREAM_MODEL = "test-streamer"
PROMPT = "one two three four five six seven eight"
STREAM_TOKENS = 8
EMBED_TEXT = "a short text to embed"
# The bench's edge allows this long a `Prefer: wait` (SWITCHBOARD_EDGE_MAX_WAIT_SECONDS; the
# default 10 s is too short for a job on a loaded 2-core machine); Envoy's route allows 60 s.
WAIT_SECONDS = 30


class BenchFailed(RuntimeError):
    """A call did not answer as the benchmark needs (an error status, a missing event)."""


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _check(answer: httpx.Response, status: int) -> httpx.Response:
    if answer.status_code != status:
        raise BenchFailed(f"{answer.request.url.path}: {answer.status_code} {answer.text[:200]}")
    return answer


def embed_job_body() -> dict[str, object]:
    return {"pipeline": "embed", "input": {"embed": {"model": EMBED_MODEL, "texts": [EMBED_TEXT]}}}


def generate_job_body() -> dict[str, object]:
    generate = {"model": STREAM_MODEL, "prompt": PROMPT, "params": {"maxTokens": STREAM_TOKENS}}
    return {"pipeline": "generate", "input": {"generate": generate}}


async def chat_first_token(http: httpx.AsyncClient) -> float:
    """`/v1/chat/completions` with `stream: true`: ms to the first chunk with content."""
    body = {
        "model": STREAM_MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": STREAM_TOKENS,
        "stream": True,
    }
    start, first, reader = time.perf_counter(), 0.0, FrameReader()
    async with http.stream("POST", "/v1/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            raise BenchFailed(f"chat stream: {answer.status_code} {(await answer.aread())[:200]!r}")
        async for line in answer.aiter_lines():
            frame = reader.feed(line)
            if frame is None or frame.data == "[DONE]":
                continue
            choices = frame.json().get("choices") or [{}]
            if not first and choices[0].get("delta", {}).get("content"):
                first = _ms(start)
    if not first:
        raise BenchFailed("chat stream ended without content")
    return first


@dataclass
class Followed:
    """What one SSE follower of a job saw: ms from its POST to the first token event (0 if
    none) and to the end of the stream, and ms from the terminal event's storing to its
    arrival."""

    first_token_ms: float = 0.0
    whole_ms: float = 0.0
    terminal_ms: float = float("nan")


async def follow_events(http: httpx.AsyncClient, job_id: str, start: float) -> Followed:
    """Reads `GET /v1/jobs/{id}/events` to its end, timing from `start` (perf_counter)."""
    seen, reader = Followed(), FrameReader()
    async with http.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
        if answer.status_code != 200:
            raise BenchFailed(f"events: {answer.status_code} {(await answer.aread())[:200]!r}")
        async for line in answer.aiter_lines():
            frame = reader.feed(line)
            if frame is None:
                continue
            if frame.event == "token" and not seen.first_token_ms:
                seen.first_token_ms = _ms(start)
            elif frame.event == "state_changed" and is_terminal(event := frame.json()):
                cursor = event.get("cursor") or frame.id
                seen.terminal_ms = since_stored_ms(cursor, time.time_ns())
    seen.whole_ms = _ms(start)
    if seen.terminal_ms != seen.terminal_ms:
        raise BenchFailed(f"job {job_id}: the stream ended without a terminal event")
    return seen


async def create_job(http: httpx.AsyncClient, body: dict[str, object]) -> tuple[str, float]:
    """`POST /v1/jobs` without waiting: (job id, ms the call took)."""
    start = time.perf_counter()
    answer = _check(await http.post("/v1/jobs", json=body), 202)
    return answer.json()["name"].removeprefix("jobs/"), _ms(start)


async def job_first_token(http: httpx.AsyncClient) -> Followed:
    """A generate job: `POST /v1/jobs`, then its SSE events to the end."""
    start = time.perf_counter()
    job_id, _ = await create_job(http, generate_job_body())
    return await follow_events(http, job_id, start)


async def embeddings(http: httpx.AsyncClient) -> None:
    """`/v1/embeddings`, one text: the interactive path the embed job is measured against."""
    _check(await http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": EMBED_TEXT}), 200)


@dataclass
class Waited:
    """A `Prefer: wait` job: its id, the wall-clock ns its answer arrived at, and whether
    that answer was the finished job (200) or the wait ran out first (202)."""

    job_id: str
    arrival_ns: int
    finished: bool


async def wait_job(http: httpx.AsyncClient) -> Waited:
    """`POST /v1/jobs` with `Prefer: wait`: 200 with the succeeded job, or 202 when the wait
    ran out; anything else is a failure."""
    headers = {"Prefer": f"wait={WAIT_SECONDS}"}
    answer = await http.post("/v1/jobs", json=embed_job_body(), headers=headers)
    arrival = time.time_ns()
    job = _check(answer, 202 if answer.status_code == 202 else 200).json()
    finished = answer.status_code == 200
    if finished and job.get("state") != "SUCCEEDED":
        raise BenchFailed(f"waited job ended {job.get('state')}: {answer.text[:200]}")
    return Waited(job["name"].removeprefix("jobs/"), arrival, finished)


async def closed_loop(concurrency: int, total: int, once: Callable[[], Awaitable[None]]) -> Loop:
    """`figures.closed_loop` after a warm-up (`figures.warm_up_calls`)."""
    await figures.closed_loop(concurrency, figures.warm_up_calls(concurrency), once)
    return await figures.closed_loop(concurrency, total, once)
