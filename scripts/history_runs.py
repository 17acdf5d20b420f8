"""The jobs whose histories `record_histories.py` records: each creates one job through the
planner, runs it to its end and returns its name. RUNS names them; GENERATION suffixes the
files they are written to."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from tests.planner.support import (
    WAIT_S,
    Planner,
    create_request,
    tokens,
)

# Loopback: the worker refuses it (WEBHOOK_DESTINATION_FORBIDDEN), so delivery fails at once.
FORBIDDEN_WEBHOOK = "http://127.0.0.1:9/hook"

Run = Callable[[Planner], Awaitable[str]]


async def _finished(planner: Planner, request: jobs_pb2.CreateJobRequest) -> str:
    job = await planner.stub.CreateJob(request, metadata=planner.md())
    await planner.watch(job.name)
    return job.name


async def succeeded(planner: Planner) -> str:
    return await _finished(planner, create_request("echo", "hello brave new world"))


async def failed(planner: Planner) -> str:
    return await _finished(planner, create_request("fail", "x"))


async def retried(planner: Planner) -> str:
    return await _finished(planner, create_request("flaky", "one two three"))


async def webhook_forbidden(planner: Planner) -> str:
    request = create_request("echo", "a b")
    request.job.webhook_url = FORBIDDEN_WEBHOOK
    return await _finished(planner, request)


async def webhook_refused(planner: Planner) -> str:
    """Since the webhook-delivery-status patch: the job shows the refusal, and logs it."""
    return await webhook_forbidden(planner)


async def cancelled(planner: Planner) -> str:
    return await _cancelled_after(planner, create_request("slow", "x"), 3)


async def _cancelled_after(
    planner: Planner, request: jobs_pb2.CreateJobRequest, token_count: int
) -> str:
    job = await planner.stub.CreateJob(request, metadata=planner.md())
    seen = []
    watch = jobs_pb2.WatchJobRequest(name=job.name)
    async with asyncio.timeout(WAIT_S):
        async for event in planner.stub.WatchJob(watch, metadata=planner.md()):
            seen.append(event)
            if len(tokens(seen)) == token_count:
                await planner.cancel(job.name)
    return job.name


def _request(job_input: pipelines_pb2.JobInput) -> jobs_pb2.CreateJobRequest:
    pipeline = (job_input.WhichOneof("kind") or "").replace("_", "-")
    return jobs_pb2.CreateJobRequest(job=jobs_pb2.Job(pipeline=pipeline, input=job_input))


def _fan_out(*models: str) -> pipelines_pb2.JobInput:
    branches = [
        pipelines_pb2.FanOutBranch(id=f"b{i}", model=model, prompt=f"branch {i} says hi")
        for i, model in enumerate(models)
    ]
    return pipelines_pb2.JobInput(fan_out=pipelines_pb2.FanOutInput(branches=branches))


def _stage(stage_id: str, model: str, prompt: str, *after: str) -> pipelines_pb2.Stage:
    generate = pipelines_pb2.GenerateInput(model=model, prompt=prompt)
    return pipelines_pb2.Stage(id=stage_id, after=after, generate=generate)


async def fan_out(planner: Planner) -> str:
    """Three branches, one failing: SUCCEEDED with 2 of 3 (and the result event)."""
    return await _finished(planner, _request(_fan_out("echo", "fail", "echo")))


async def fan_out_cancelled(planner: Planner) -> str:
    return await _cancelled_after(planner, _request(_fan_out("slow", "slow")), 4)


async def graph(planner: Planner) -> str:
    """a and b in parallel, c quoting both after them."""
    stages = [
        _stage("a", "echo", "alpha"),
        _stage("b", "echo", "beta"),
        _stage("c", "echo", "{{a}} and {{b}}", "a", "b"),
    ]
    graph = pipelines_pb2.StageGraph(stages=stages)
    return await _finished(planner, _request(pipelines_pb2.JobInput(graph=graph)))


async def graph_failed(planner: Planner) -> str:
    """A failed stage fails the job: the running one is stopped, its dependant skipped."""
    stages = [
        _stage("a", "fail", "x"),
        _stage("b", "slow", "y"),
        _stage("c", "echo", "{{a}}", "a"),
    ]
    graph = pipelines_pb2.StageGraph(stages=stages)
    return await _finished(planner, _request(pipelines_pb2.JobInput(graph=graph)))


async def chat(planner: Planner) -> str:
    """One turn of a new session: load the window, generate, append the turn."""
    turn = pipelines_pb2.ChatInput(session_id=f"s-{uuid.uuid4().hex[:8]}", model="echo")
    turn.message = "hello there"
    return await _finished(planner, _request(pipelines_pb2.JobInput(chat=turn)))


async def ingest_document(planner: Planner) -> str:
    """A short text: extract, chunk, then embed and upsert into a collection of its own."""
    text = "Tides follow the moon. Bread rises with yeast. Comets have tails of ice and dust."
    ingest = pipelines_pb2.IngestDocumentInput(
        collection=f"c-{uuid.uuid4().hex[:8]}",
        document=pipelines_pb2.Document(text=text),
        embed_model="echo-embed",
        chunk_tokens=8,
        chunk_overlap=0,
    )
    return await _finished(planner, _request(pipelines_pb2.JobInput(ingest_document=ingest)))


def _embed(model: str) -> pipelines_pb2.JobInput:
    embed = pipelines_pb2.EmbedInput(model=model, texts=["one text", "and another"])
    return pipelines_pb2.JobInput(embed=embed)


async def embed(planner: Planner) -> str:
    return await _finished(planner, _request(_embed("echo-embed")))


async def embed_failed(planner: Planner) -> str:
    """The fake answers NOT_FOUND for an unknown model: the job fails at once."""
    return await _finished(planner, _request(_embed("no-such-embedder")))


async def graph_embed(planner: Planner) -> str:
    """An embed stage beside a generate stage, and one after both."""
    stages = [
        pipelines_pb2.Stage(id="e", embed=_embed("echo-embed").embed),
        _stage("a", "echo", "alpha"),
        _stage("c", "echo", "{{a}} then", "a", "e"),
    ]
    graph = pipelines_pb2.StageGraph(stages=stages)
    return await _finished(planner, _request(pipelines_pb2.JobInput(graph=graph)))


# The newest patch whose command sequence the recorded runs show (`local-embed`, in
# flows/workflow.py). Only runs that embed changed with it; the others were not recorded again.
GENERATION = "local_embed"
RUNS: dict[str, Run] = {
    "succeeded": succeeded,
    "failed": failed,
    "retried": retried,
    "cancelled": cancelled,
    "webhook_forbidden": webhook_forbidden,
    # Since the events-before-state patch:
    "fan_out": fan_out,
    "fan_out_cancelled": fan_out_cancelled,
    "graph": graph,
    "graph_failed": graph_failed,
    # Since the webhook-delivery-status patch:
    "webhook_refused": webhook_refused,
    # The chat and document pipelines (no patch: recorded to keep their commands as they are):
    "chat": chat,
    "ingest_document": ingest_document,
    # Embeds (since local-embed a local activity; recorded before it too, as local_events):
    "embed": embed,
    "embed_failed": embed_failed,
    "graph_embed": graph_embed,
}
