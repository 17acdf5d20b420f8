"""Mixed load through Envoy's public port, as a careful client sends it.

Each job is created under an id of our choosing and the create is retried with that same id
on a connection error, a 5xx or a 429, so a lost answer never makes a second job. Each job
has an SSE follower that resumes with Last-Event-ID whenever its stream drops, and keeps
every event it received.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from . import sse

CREATE_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
# The edge sends a heartbeat on a quiet stream (SWITCHBOARD_EDGE_HEARTBEAT_SECONDS in the
# chaos stack); a read silent for much longer means a dead connection.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=30.0)
MAX_BACKOFF = 2.0


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    pipeline: str
    input: dict[str, Any]
    api_key: str
    fault: str

    def body(self) -> dict[str, Any]:
        # The input's oneof field, lowerCamelCase as proto3 JSON names it.
        head, *rest = self.pipeline.split("-")
        field_name = head + "".join(part.title() for part in rest)
        return {"pipeline": self.pipeline, "input": {field_name: self.input}}


@dataclass
class Created:
    """How the create went: accepted once any attempt got 200 or 202."""

    status: int | None = None
    attempts: int = 0
    retried: list[str] = field(default_factory=list)
    refused: str = ""

    @property
    def accepted(self) -> bool:
        return self.status in (200, 202)


@dataclass
class Followed:
    """What one follower received, in order, over all its connections."""

    events: list[sse.Event] = field(default_factory=list)
    connects: int = 0
    # Why each connection ended before the job's end (exception, status, early end).
    drops: list[str] = field(default_factory=list)
    # `gap` and `error` events: history the stream said it could not give.
    anomalies: list[str] = field(default_factory=list)
    terminal: str | None = None
    # time.monotonic() when the terminal event arrived.
    ended_at: float | None = None


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _retry_after(reply: httpx.Response, default: float) -> float:
    try:
        return min(float(reply.headers.get("retry-after", default)), 5.0)
    except ValueError:
        return default


async def create(client: httpx.AsyncClient, spec: JobSpec, give_up_at: float) -> Created:
    """POSTs the job until an answer other than 5xx/429 or `give_up_at` (monotonic)."""
    created = Created()
    delay = 0.2
    while True:
        created.attempts += 1
        try:
            reply = await client.post(
                "/v1/jobs",
                params={"job_id": spec.job_id},
                json=spec.body(),
                headers=auth(spec.api_key),
                timeout=CREATE_TIMEOUT,
            )
        except httpx.TransportError as e:
            created.retried.append(type(e).__name__)
            wait = delay
        else:
            if reply.status_code in (200, 202):
                created.status = reply.status_code
                return created
            if reply.status_code != 429 and reply.status_code < 500:
                created.status = reply.status_code
                created.refused = f"{reply.status_code} {reply.text[:300]}"
                return created
            created.retried.append(str(reply.status_code))
            wait = _retry_after(reply, delay) if reply.status_code == 429 else delay
        if time.monotonic() + wait > give_up_at:
            return created
        await asyncio.sleep(wait)
        delay = min(delay * 2, MAX_BACKOFF)


async def follow(client: httpx.AsyncClient, job_id: str, api_key: str, into: Followed) -> None:
    """Follows the job's events until its terminal state; resumes after every drop with the
    last id received. Runs until the job ends or the task is cancelled."""
    delay = 0.2
    while into.terminal is None:
        headers = auth(api_key)
        if into.events:
            headers["Last-Event-ID"] = into.events[-1].id
        try:
            await _one_stream(client, job_id, headers, into)
        except httpx.TransportError as e:
            into.drops.append(type(e).__name__)
        if into.terminal is None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


async def _one_stream(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str], into: Followed
) -> None:
    path = f"/v1/jobs/{job_id}/events"
    async with client.stream("GET", path, headers=headers, timeout=STREAM_TIMEOUT) as reply:
        into.connects += 1
        if reply.status_code != 200:
            await reply.aread()
            into.drops.append(f"{reply.status_code} {_reason(reply)}")
            return
        async for event in sse.events(reply.aiter_lines()):
            if event.type == "error":
                into.drops.append(f"error-event {_error_reason(event.data)}")
                return
            if event.type == "gap":
                into.anomalies.append(f"gap {event.data}")
            into.events.append(event)
            if (state := event.terminal_state) is not None:
                into.terminal, into.ended_at = state, time.monotonic()
                return
        into.drops.append("stream ended before the job's end")


def _reason(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:80] or "(no body)"
    return _error_reason(body) if isinstance(body, dict) else "(not an error body)"


def _error_reason(body: dict[str, Any]) -> str:
    """The ErrorInfo reason of a Google error body, else its status."""
    error = body.get("error", {})
    for detail in error.get("details", []):
        if isinstance(detail, dict) and detail.get("reason"):
            return str(detail["reason"])
    return str(error.get("status", "(no reason)"))


async def job_state(client: httpx.AsyncClient, spec: JobSpec) -> dict[str, Any] | None:
    """The job as GET shows it; None when no answer (a 404 is an answer: {})."""
    try:
        reply = await client.get(
            f"/v1/jobs/{spec.job_id}", headers=auth(spec.api_key), timeout=CREATE_TIMEOUT
        )
    except httpx.TransportError:
        return None
    if reply.status_code == 404:
        return {}
    if reply.status_code != 200:
        return None
    job = reply.json()
    return job if isinstance(job, dict) else None


WORDS = [
    "amber", "birch", "cobalt", "dune", "ember", "fjord", "granite", "harbor", "indigo",
    "juniper", "kestrel", "lagoon", "meadow", "nectar", "onyx", "prairie", "quartz", "river",
    "sierra", "tundra",
]  # fmt: skip


def mixed_wave(run: str, wave: int, fault: str, keys: list[str]) -> list[JobSpec]:
    """One wave of every kind: three generations (one long enough to span a restart), an
    embedding, a chat turn and a small ingest; spread over the clients' keys."""
    prompt = " ".join(WORDS)
    long_prompt = " ".join(WORDS * 3)

    def generate(text: str, max_tokens: int) -> dict[str, Any]:
        return {"model": "test-streamer", "prompt": text, "params": {"maxTokens": max_tokens}}

    inputs: list[tuple[str, str, dict[str, Any]]] = [
        ("gen-a", "generate", generate(prompt, 30)),
        ("gen-b", "generate", generate(prompt, 40)),
        ("gen-long", "generate", generate(long_prompt, 120)),
        ("embed", "embed", {"model": "test-echo-embed", "texts": [f"wave {wave}", fault]}),
        (
            "chat",
            "chat",
            {
                "sessionId": f"chaos-{run}-s{wave % 3}",
                "model": "default-chat",
                "message": f"Name a colour for wave {wave}.",
                "params": {"maxTokens": 8},
            },
        ),
        (
            "ingest",
            "ingest-document",
            {
                "collection": "chaos",
                "document": {"text": f"Wave {wave} killed {fault}. {prompt}."},
                "chunkTokens": 8,
                "chunkOverlap": 0,
            },
        ),
    ]
    return [
        JobSpec(f"{run}-w{wave:02d}-{name}", pipeline, job_input, keys[i % len(keys)], fault)
        for i, (name, pipeline, job_input) in enumerate(inputs)
    ]
