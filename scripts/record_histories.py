"""Record JobWorkflow histories for the replay test (`tests/planner/test_replay.py`).

    .venv/bin/python scripts/record_histories.py [OUT_DIR] [NAME ...]
    # OUT_DIR defaults to tests/planner/histories; NAMEs to every run below; each is
    # written as <name>_<GENERATION>.json

It starts Temporal, Valkey and Chroma as `switchboard up --only valkey,temporal,chroma` does,
the planner server and worker (chat and document activities included) in this process, and
the tests' fake inference service; it runs a few
representative jobs to their end and writes each workflow's history as `<name>.json`.

A history already in OUT_DIR is kept, not re-recorded: the old ones are the runs that began
before a patch (`workflow.patched`) and must still replay. After a deliberate, versioned
change, set GENERATION to the new patch's id and record every run again under the new names
(new kinds of run go into RUNS); delete a file only when no run of its kind can still be
open anywhere. An accidental change of the workflow's commands is what the replay test
catches. (Files without a suffix are the generations before `local-events`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.jobref import JobRef
from switchboard.launcher import background
from switchboard.launcher.ports import free_block
from switchboard.planner.process import connect_temporal
from switchboard.planner.stores.chats import ChatSessions
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.activities import Activities
from switchboard.planner.work.chat import ChatActivities
from switchboard.planner.work.documents import Documents
from switchboard.planner.work.vectors import VectorStore
from switchboard.planner.work.worker import build_worker
from tests.planner.fake_inference import FakeInference
from tests.planner.support import (
    WAIT_S,
    Planner,
    create_request,
    running_planner,
    tokens,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "planner" / "histories"
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


@contextlib.asynccontextmanager
async def running_worker(
    client: Client, valkey: Valkey, inference: str, chroma_url: str, queue: str
) -> AsyncIterator[None]:
    """The worker as `worker.run` builds it: the chat and document activities included."""
    channel = grpc.aio.insecure_channel(inference)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    log, vectors = EventLog(valkey), VectorStore(chroma_url)
    worker = build_worker(
        client,
        queue,
        Activities(stub, log),
        grace_seconds=1.0,
        chat=ChatActivities(ChatSessions(valkey)),
        documents=Documents(stub, log, vectors),
    )
    try:
        async with worker:
            yield
    finally:
        await vectors.close()
        await channel.close(grace=None)


async def record(temporal: str, valkey: str, chroma_url: str, out: Path, names: list[str]) -> None:
    client = await connect_temporal(temporal, "default", wait_seconds=30)
    valkey_client = Valkey.from_url(f"valkey://{valkey}/0")
    fake = FakeInference()
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    queue = f"record-{uuid.uuid4().hex}"
    try:
        async with (
            running_planner(client, valkey_client, fake, queue) as planner,
            running_worker(client, valkey_client, f"127.0.0.1:{port}", chroma_url, queue),
        ):
            for name in names:
                job = await RUNS[name](planner)
                wid = JobRef.from_name(planner.client_id, job).workflow_id
                handle = client.get_workflow_handle(wid)
                # The webhook activity runs after the terminal event: wait for the end.
                async with asyncio.timeout(WAIT_S):
                    await handle.result()
                history = await handle.fetch_history()
                (out / _file(name)).write_text(_scrubbed(history.to_json()) + "\n")
                print(f"recorded {name}: {len(history.events)} events", flush=True)
    finally:
        await valkey_client.aclose()
        await server.stop(0)


def _file(name: str) -> str:
    return f"{name}_{GENERATION}.json"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    unknown = set(sys.argv[2:]) - set(RUNS)
    if unknown:
        sys.exit(f"unknown runs {sorted(unknown)}; known: {sorted(RUNS)}")
    out.mkdir(parents=True, exist_ok=True)
    kept = [n for n in sys.argv[2:] or RUNS if (out / _file(n)).exists()]
    names = [n for n in sys.argv[2:] or RUNS if n not in kept]
    if kept:
        print(f"kept (delete to re-record): {', '.join(kept)}", flush=True)
    if not names:
        return
    with tempfile.TemporaryDirectory(prefix="record-histories-") as state:
        ports = free_block()
        stack = background.start(Path(state), ports, ("valkey", "temporal", "chroma"))
        try:
            temporal, valkey = f"127.0.0.1:{ports.temporal}", f"127.0.0.1:{ports.valkey}"
            chroma = f"http://127.0.0.1:{ports.chroma}"
            asyncio.run(record(temporal, valkey, chroma, out, names))
        finally:
            stack.stop()


def _scrubbed(history_json: str) -> str:
    """Drops failure stack traces: they name this machine's paths and replay ignores them."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("" if k == "stackTrace" else scrub(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return json.dumps(scrub(json.loads(history_json)), indent=2)


if __name__ == "__main__":
    main()
