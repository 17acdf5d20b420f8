"""Fixtures: a real Temporal dev server and valkey-server per session; per test a planner
server and worker on a fresh task queue, with the fake inference service behind them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.launcher.ports import Ports, free_block
from switchboard.planner import process

from ..stack import start_stack
from . import restartable
from .fake_inference import FakeInference
from .support import Planner, running_planner, running_worker, serving


@dataclass(frozen=True)
class Infra:
    """Temporal, Valkey and Chroma as `switchboard up --only valkey,temporal,chroma` runs them."""

    ports: Ports

    @property
    def temporal(self) -> str:
        return f"127.0.0.1:{self.ports.temporal}"

    @property
    def valkey(self) -> str:
        return f"127.0.0.1:{self.ports.valkey}"

    @property
    def chroma_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.chroma}"


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    ports = free_block()
    only = ("valkey", "temporal", "chroma")
    proc = start_stack(tmp_path_factory.mktemp("infra"), ports, only=only)
    try:
        yield Infra(ports)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def real_inference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real inference service and Triton with every model, as `switchboard up --only
    inference` runs them (for the document pipelines: embeddings, OCR); its address. Only
    the tests that need it start it."""
    ports = free_block()
    proc = start_stack(tmp_path_factory.mktemp("inference"), ports, only=("inference",))
    try:
        yield f"127.0.0.1:{ports.inference}"
    finally:
        proc.stop()


@pytest_asyncio.fixture
async def own_valkey(tmp_path: Path) -> AsyncIterator[restartable.Restartable]:
    """A valkey-server of the test's own, to kill and start again on its port and data."""
    server = restartable.valkey(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def tracing() -> None:
    """Real spans (not the no-op API), so trace ids and parent links are the SDK's."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


@pytest_asyncio.fixture
async def valkey_client(infra: Infra) -> AsyncIterator[Valkey]:
    client = Valkey.from_url(f"valkey://{infra.valkey}/0")
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def temporal_client(infra: Infra) -> Client:
    return await process.connect_temporal(infra.temporal, "default", wait_seconds=10)


@pytest_asyncio.fixture
async def inference() -> AsyncIterator[tuple[FakeInference, str]]:
    """The fake inference service on a real gRPC server: (servicer, address)."""
    fake = FakeInference()
    async with serving(fake) as address:
        yield fake, address


@pytest_asyncio.fixture
async def planner(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> AsyncIterator[Planner]:
    """Planner server and worker on a fresh task queue, wired to the fake inference."""
    fake, address = inference
    task_queue = f"test-{uuid.uuid4().hex}"
    async with (
        running_planner(temporal_client, valkey_client, fake, task_queue) as running,
        running_worker(temporal_client, valkey_client, address, task_queue),
    ):
        yield running
