"""Helpers for the planner's tests: a running planner stack and small wire helpers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.common.errors import from_rpc_error
from switchboard.common.jobref import JobRef
from switchboard.common.settings import Secret
from switchboard.planner.api import server
from switchboard.planner.shared.config import Settings
from switchboard.planner.stores import events
from switchboard.planner.stores.chats import ChatSessions
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.activities import Activities
from switchboard.planner.work.chat import ChatActivities
from switchboard.planner.work.worker import build_worker

from ..stack import free_ports
from .fake_inference import FakeInference

WAIT_S = 20.0
POLL_S = 0.1
# The planner believes x-client-id only beside this (SWITCHBOARD_PLANNER_INTERNAL_TOKENS).
INTERNAL_TOKEN = "planner-tests-internal-token"


@dataclass
class Planner:
    """A planner server and worker on a fresh task queue, wired to the fake inference."""

    stub: jobs_pb2_grpc.JobServiceAsyncStub
    fake: FakeInference
    valkey: Valkey
    task_queue: str
    client_id: str = field(default_factory=lambda: f"client-{uuid.uuid4().hex[:8]}")

    def md(self, client_id: str | None = None) -> tuple[tuple[str, str], ...]:
        return (
            ("x-client-id", client_id or self.client_id),
            ("x-switchboard-internal", INTERNAL_TOKEN),
        )

    async def create(
        self,
        model: str = "echo",
        prompt: str = "hello brave new world",
        *,
        job_id: str = "",
        labels: dict[str, str] | None = None,
    ) -> jobs_pb2.Job:
        request = create_request(model, prompt, job_id=job_id, labels=labels)
        return await self.stub.CreateJob(request, metadata=self.md())

    async def get(self, name: str) -> jobs_pb2.Job:
        return await self.stub.GetJob(jobs_pb2.GetJobRequest(name=name), metadata=self.md())

    async def cancel(self, name: str) -> jobs_pb2.Job:
        return await self.stub.CancelJob(jobs_pb2.CancelJobRequest(name=name), metadata=self.md())

    async def result(self, name: str) -> pipelines_pb2.JobResult:
        request = jobs_pb2.GetJobResultRequest(name=name)
        return await self.stub.GetJobResult(request, metadata=self.md())

    async def watch(
        self, name: str, after: str = "", client_id: str | None = None
    ) -> list[events_pb2.JobEvent]:
        return await watch(self.stub, name, self.md(client_id), after)

    async def stored(self, name: str) -> list[events_pb2.JobEvent]:
        """The job's log as stored, read straight from Valkey."""
        key = events.stream_key(JobRef.from_name(self.client_id, name))
        entries = await self.valkey.xrange(key)
        return [events_pb2.JobEvent.FromString(fields[b"e"]) for _, fields in entries]


async def watch(
    stub: jobs_pb2_grpc.JobServiceAsyncStub,
    name: str,
    metadata: tuple[tuple[str, str], ...],
    after: str = "",
) -> list[events_pb2.JobEvent]:
    """Every event WatchJob sends until it ends (after the terminal event)."""
    request = jobs_pb2.WatchJobRequest(name=name, after_cursor=after)
    seen: list[events_pb2.JobEvent] = []
    async with asyncio.timeout(WAIT_S):
        async for event in stub.WatchJob(request, metadata=metadata):
            seen.append(event)
    return seen


def create_request(
    model: str, prompt: str, *, job_id: str = "", labels: dict[str, str] | None = None
) -> jobs_pb2.CreateJobRequest:
    job = jobs_pb2.Job(
        pipeline="generate",
        input=pipelines_pb2.JobInput(
            generate=pipelines_pb2.GenerateInput(model=model, prompt=prompt)
        ),
        labels=labels or {},
    )
    return jobs_pb2.CreateJobRequest(job=job, job_id=job_id)


def states(seen: list[events_pb2.JobEvent]) -> list[str]:
    return [e.state_changed.state for e in seen if e.HasField("state_changed")]


def tokens(seen: list[events_pb2.JobEvent]) -> list[str]:
    return [e.token.text for e in seen if e.HasField("token")]


def reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call, as the edge would read it."""
    return from_rpc_error(error).reason


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = WAIT_S) -> None:
    """Polls until the check holds, for at most `within_s`."""
    for _ in range(int(within_s / POLL_S)):
        if await check():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"condition not met within {within_s} s")


@asynccontextmanager
async def running_worker(
    temporal_client: Client, valkey_client: Valkey, inference_address: str, task_queue: str
) -> AsyncIterator[None]:
    """The planner's worker (workflow and activities) polling `task_queue`."""
    channel = grpc.aio.insecure_channel(inference_address)
    inference_stub = inference_pb2_grpc.InferenceServiceStub(channel)
    activities = Activities(inference_stub, EventLog(valkey_client))
    try:
        chat = ChatActivities(ChatSessions(valkey_client))
        async with build_worker(
            temporal_client, task_queue, activities, grace_seconds=1.0, chat=chat
        ):
            yield
    finally:
        await channel.close(grace=None)


@asynccontextmanager
async def running_planner(
    temporal_client: Client, valkey_client: Valkey, fake: FakeInference, task_queue: str
) -> AsyncIterator[Planner]:
    """The planner's gRPC server, as `server.build` makes it, on a free port."""
    (port,) = free_ports(1)
    settings = Settings(
        host="127.0.0.1",
        port=port,
        metrics_port=0,
        temporal_address="(client given)",
        temporal_namespace="default",
        task_queue=task_queue,
        valkey_url="(client given)",
        log_level="INFO",
        heartbeat_seconds=5.0,  # longer than any wait in the tests: idle watches block
        grace_seconds=0.0,
        internal_tokens=(Secret(INTERNAL_TOKEN),),
    )
    grpc_server, _ = server.build(settings, temporal_client, valkey_client)
    await grpc_server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Planner(jobs_pb2_grpc.JobServiceStub(channel), fake, valkey_client, task_queue)
    finally:
        await channel.close(grace=None)
        await grpc_server.stop(0)


@asynccontextmanager
async def serving(fake: FakeInference) -> AsyncIterator[str]:
    """A stand-in inference service on a real gRPC server; yields its address."""
    grpc_server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(fake, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await grpc_server.stop(0)
