"""Fixtures: one real tritonserver per session, and the inference service in-process per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import tritonclient.grpc.aio as aioclient

from .support import Service, TritonProcess, launch_triton, running_service, stop_triton


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    triton = launch_triton(tmp_path_factory.mktemp("triton"))
    try:
        yield triton
    finally:
        stop_triton(triton)


@pytest_asyncio.fixture
async def service(triton_server: TritonProcess) -> AsyncIterator[Service]:
    """The inference service, serving (canary passed), test-streamer paced at 50 tokens/s."""
    async with running_service(triton_server.grpc_address) as running:
        yield running


@pytest_asyncio.fixture
async def client(triton_server: TritonProcess) -> AsyncIterator[aioclient.InferenceServerClient]:
    """A tritonclient talking to the session's Triton directly (no inference service)."""
    client = aioclient.InferenceServerClient(triton_server.grpc_address)
    try:
        yield client
    finally:
        await client.close()
