"""Edge test fixtures: a stand-in planner on a real grpc.aio server, the real edge app
under a real uvicorn (both on port 0), and an HTTP client for it.

The planner here is a stand-in serving canned jobs, events and errors; the end-to-end
tests cover the real planner.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.common.errors import FailedPrecondition, NotFound, SwitchboardError
from switchboard.common.grpcserver import ServiceInterceptor, set_serving
from switchboard.common.settings import Secret
from switchboard.edge.config import Settings
from switchboard.edge.planner import SERVICE
from switchboard.edge.server import EdgeServer, build_server
from switchboard.launcher.ports import free_block

from ..planner.support import serving
from ..stack import start_stack
from .inference_standin import ChatInference

API_KEY = "sb-test-key"
CLIENT = "tester"
HEARTBEAT_SECONDS = 0.3
WAIT_SECONDS = 10.0

Context = grpc.aio.ServicerContext[Any, Any]

# A real SDK tracer, so the edge makes its own span ids (the no-op one would echo the
# caller's); set once per process, as telemetry.setup does in main().
if not isinstance(trace.get_tracer_provider(), TracerProvider):
    trace.set_tracer_provider(TracerProvider())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/edge/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))


@dataclass
class Recorded:
    rpc: str
    request: object
    metadata: dict[str, str]


@dataclass
class StandInPlanner(jobs_pb2_grpc.JobServiceServicer):
    """Stand-in for the planner's JobService; records each call's request and metadata."""

    jobs: dict[str, jobs_pb2.Job] = field(default_factory=dict)
    results: dict[str, pipelines_pb2.JobResult] = field(default_factory=dict)
    events: list[events_pb2.JobEvent] = field(default_factory=list)
    calls: list[Recorded] = field(default_factory=list)
    # After the events, WatchJob fails with this, or else stays open while `hold`.
    watch_error: SwitchboardError | None = None
    hold: bool = False
    # Every lookup fails as an unexpected bug would (the planner answers INTERNAL).
    crash: bool = False
    watch_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    address: str = ""

    def record(self, rpc: str, request: object, context: Context) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.calls.append(Recorded(rpc, request, metadata))

    def rpcs(self) -> list[str]:
        return [c.rpc for c in self.calls]

    def find(self, name: str) -> jobs_pb2.Job:
        if self.crash:
            raise RuntimeError("secret internals")
        if name not in self.jobs:
            raise NotFound(f"{name} does not exist", reason="JOB_NOT_FOUND")
        return self.jobs[name]

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> jobs_pb2.Job:
        self.record("CreateJob", request, context)
        job = jobs_pb2.Job()
        job.CopyFrom(request.job)
        job.name = f"jobs/{request.job_id or 'generated-1'}"
        job.state = jobs_pb2.Job.QUEUED
        self.jobs[job.name] = job
        return job

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> jobs_pb2.Job:
        self.record("GetJob", request, context)
        return self.find(request.name)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        self.record("ListJobs", request, context)
        return jobs_pb2.ListJobsResponse(jobs=list(self.jobs.values()), next_page_token="p2")

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> jobs_pb2.Job:
        self.record("CancelJob", request, context)
        job = self.find(request.name)
        job.state = jobs_pb2.Job.CANCELLING
        return job

    async def GetJobResult(
        self, request: jobs_pb2.GetJobResultRequest, context: Context
    ) -> pipelines_pb2.JobResult:
        self.record("GetJobResult", request, context)
        self.find(request.name)
        if request.name not in self.results:
            raise FailedPrecondition("the job is still running", reason="JOB_NOT_FINISHED")
        return self.results[request.name]

    async def ListPipelines(
        self, request: jobs_pb2.ListPipelinesRequest, context: Context
    ) -> jobs_pb2.ListPipelinesResponse:
        self.record("ListPipelines", request, context)
        return jobs_pb2.ListPipelinesResponse(
            pipelines=[jobs_pb2.Pipeline(name="generate", stages=["generate"])]
        )

    async def GetChatSession(
        self, request: jobs_pb2.GetChatSessionRequest, context: Context
    ) -> jobs_pb2.ChatSession:
        self.record("GetChatSession", request, context)
        turn = jobs_pb2.ChatTurn(role="user", content="hello", job="jobs/chat-1")
        return jobs_pb2.ChatSession(name=request.name, turns=[turn])

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[events_pb2.JobEvent]:
        self.record("WatchJob", request, context)
        self.find(request.name)
        cursors = [e.cursor for e in self.events]
        after = request.after_cursor
        start = cursors.index(after) + 1 if after and after in cursors else 0
        try:
            for event in self.events[start:]:
                yield event
            if self.watch_error is not None:
                raise self.watch_error
            if self.hold:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.watch_cancelled.set()
            raise


def job(job_id: str, state: jobs_pb2.Job.State.ValueType) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name=f"jobs/{job_id}",
        state=state,
        pipeline="generate",
        input=pipelines_pb2.JobInput(
            generate=pipelines_pb2.GenerateInput(model="test-streamer", prompt="hi")
        ),
        client=CLIENT,
    )


@pytest_asyncio.fixture
async def planner() -> AsyncIterator[StandInPlanner]:
    servicer = StandInPlanner()
    server = grpc.aio.server(interceptors=[ServiceInterceptor()])
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await set_serving(health_servicer, [SERVICE], True)
    servicer.address = f"127.0.0.1:{port}"
    try:
        yield servicer
    finally:
        await server.stop(None)


def settings_for(planner_address: str) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        planner_address=planner_address,
        api_keys=Secret(f"{API_KEY}={CLIENT},other-key=other"),
        log_level="INFO",
        heartbeat_seconds=HEARTBEAT_SECONDS,
    )


@pytest_asyncio.fixture
async def fake() -> ChatInference:
    """A stand-in inference service for the OpenAI routes and the WebSocket."""
    return ChatInference()


@pytest_asyncio.fixture
async def edge(planner: StandInPlanner, fake: ChatInference) -> AsyncIterator[EdgeServer]:
    """An edge in front of the stand-in planner and the stand-in inference service."""
    async with serving(fake) as address:
        settings = dataclasses.replace(settings_for(planner.address), inference_address=address)
        async with running(build_server(settings)) as server:
            yield server


@pytest_asyncio.fixture
async def edge_server(planner: StandInPlanner) -> AsyncIterator[EdgeServer]:
    async with running(build_server(settings_for(planner.address))) as server:
        yield server


@asynccontextmanager
async def running(server: EdgeServer) -> AsyncIterator[EdgeServer]:
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("edge exited before it started")
                await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_SECONDS)


def authenticated(server: EdgeServer) -> httpx.AsyncClient:
    """A client of a running edge that sends the test key (to be closed: `async with`)."""
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=WAIT_SECONDS,
    )


@asynccontextmanager
async def edge_client(address: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A real edge (`settings_for(address)`, `settings` overriding) and a client for it."""
    edge_settings = dataclasses.replace(settings_for(address), **settings)
    async with running(build_server(edge_settings)) as edge, authenticated(edge) as http:
        yield http


@pytest_asyncio.fixture
async def client(edge_server: EdgeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with authenticated(edge_server) as http:
        yield http


@pytest.fixture
def no_planner_address() -> Iterator[str]:
    """An address nothing listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real valkey-server as `switchboard up --only valkey` runs it, for API keys and
    rate limits; started only for the tests that ask for it."""
    ports = free_block()
    proc = start_stack(tmp_path_factory.mktemp("valkey"), ports, only=("valkey",))
    try:
        yield f"valkey://127.0.0.1:{ports.valkey}/0"
    finally:
        proc.stop()
