"""The start-up canary against the real Triton."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from switchboard.inference import canary
from switchboard.inference.models import GENERATE, Model
from switchboard.inference.triton import TritonClient

from ..stack import free_ports
from .support import TritonProcess

STREAMER = Model("test-streamer", "test-streamer", GENERATE, takes_max_tokens=True)


@pytest_asyncio.fixture
async def triton(triton_server: TritonProcess) -> AsyncIterator[TritonClient]:
    client = TritonClient(triton_server.grpc_address)
    yield client
    await client.close()


@pytest.mark.asyncio
async def test_canary_passes_on_a_working_model(triton: TritonClient) -> None:
    assert await canary.wait_until_healthy(triton, STREAMER) == 1


@pytest.mark.asyncio
async def test_canary_fails_on_a_failing_model(triton: TritonClient) -> None:
    with pytest.raises(canary.CanaryFailed, match="this model always fails"):
        await canary.probe(triton, Model("test-fail", "test-fail", GENERATE), timeout_s=5)


@pytest.mark.asyncio
async def test_canary_keeps_retrying_while_triton_is_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=canary.__name__)
    (port,) = free_ports(1)
    client = TritonClient(f"127.0.0.1:{port}")
    try:
        waiting = asyncio.create_task(
            canary.wait_until_healthy(client, STREAMER, first_backoff_s=0.05, max_backoff_s=0.1)
        )
        await asyncio.sleep(0.6)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        await client.close()

    attempts = [r for r in caplog.records if r.getMessage() == "canary failed; retrying"]
    assert len(attempts) >= 3
