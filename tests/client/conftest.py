"""Fixtures: Temporal and Valkey per session (as `switchboard up --only valkey,temporal` runs
them); per test the real planner server and worker on a fresh task queue with the planner
tests' fake inference behind them, the server on a port of its own so a test can restart it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.client import JobsClient, RetryPolicy
from switchboard.common.settings import Secret
from switchboard.launcher.ports import Ports, free_block
from switchboard.planner import process
from switchboard.planner.api import server
from switchboard.planner.shared.config import Settings

from ..planner.fake_inference import FakeInference
from ..planner.support import running_worker, serving
from ..stack import free_ports, start_stack

TOKEN = "client-tests-internal-token"
# Resumes quickly: a test restarts the planner within a second.
FAST_RETRY = RetryPolicy(max_attempts=20, base_delay=0.05, max_delay=0.5)


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    ports = free_block()
    proc = start_stack(tmp_path_factory.mktemp("infra"), ports, only=("valkey", "temporal"))
    try:
        yield ports
    finally:
        proc.stop()


@pytest.fixture(scope="session", autouse=True)
def tracing() -> None:
    """Real spans, so `traceparent` carries real ids."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


@dataclass
class PlannerServer:
    """The planner's gRPC server as `server.build` makes it, stoppable and startable again
    on the same port (a restart, as a deploy or a crash would do it)."""

    temporal: Client
    valkey: Valkey
    task_queue: str
    port: int = field(default_factory=lambda: free_ports(1)[0])
    _server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = Settings(
            host="127.0.0.1",
            port=self.port,
            metrics_port=0,
            temporal_address="(client given)",
            temporal_namespace="default",
            task_queue=self.task_queue,
            valkey_url="(client given)",
            log_level="INFO",
            heartbeat_seconds=5.0,
            grace_seconds=0.0,
            internal_tokens=(Secret(TOKEN),),
        )
        self._server, _ = server.build(settings, self.temporal, self.valkey)
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


@pytest_asyncio.fixture
async def planner(infra: Ports) -> AsyncIterator[PlannerServer]:
    temporal = await process.connect_temporal(
        f"127.0.0.1:{infra.temporal}", "default", wait_seconds=10
    )
    valkey = Valkey.from_url(f"valkey://127.0.0.1:{infra.valkey}/0")
    task_queue = f"client-{uuid.uuid4().hex}"
    planner = PlannerServer(temporal, valkey, task_queue)
    try:
        async with serving(FakeInference()) as inference:
            worker = running_worker(temporal, valkey, inference, task_queue)
            async with worker:
                await planner.start()
                try:
                    yield planner
                finally:
                    await planner.stop()
    finally:
        await valkey.aclose()


@pytest_asyncio.fixture
async def client(planner: PlannerServer) -> AsyncIterator[JobsClient]:
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    async with JobsClient(
        planner.address, client_id=client_id, internal_token=TOKEN, retry=FAST_RETRY
    ) as jobs:
        yield jobs
