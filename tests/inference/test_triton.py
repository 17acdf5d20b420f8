"""The Triton adapter against the real tritonserver: streams, metadata, error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from switchboard.inference.errors import BackendError, BackendUnavailable, ModelNotFound
from switchboard.inference.triton import Finish, GenerateCall, Tensor, Token, TritonClient

from ..stack import free_ports
from .support import TritonProcess, launch_triton, stop_triton, unique


@pytest_asyncio.fixture
async def triton(triton_server: TritonProcess) -> AsyncIterator[TritonClient]:
    client = TritonClient(triton_server.grpc_address)
    yield client
    await client.close()


async def _all(triton: TritonClient, call: GenerateCall) -> list[Token | Finish]:
    return [event async for event in triton.generate(call)]


@pytest.mark.asyncio
async def test_generate_yields_tokens_then_one_finish(triton: TritonClient) -> None:
    events = await _all(triton, GenerateCall("test-streamer", "hello world", unique("t")))

    hello, world = Token("hello "), Token("world ")
    assert events == [hello, world, hello, world, Finish("stop", 2, completion_tokens=4)]


@pytest.mark.asyncio
async def test_max_tokens_reaches_the_model(triton: TritonClient) -> None:
    call = GenerateCall("test-streamer", "a b c", unique("t"), max_tokens=1)

    assert await _all(triton, call) == [Token("a "), Finish("length", 3, 1)]


@pytest.mark.asyncio
async def test_in_band_model_error_is_backend_error(triton: TritonClient) -> None:
    with pytest.raises(BackendError) as raised:
        await _all(triton, GenerateCall("test-fail", "boom", unique("t")))

    assert raised.value.reason == "BACKEND_ERROR"
    assert raised.value.code == grpc.StatusCode.INTERNAL
    assert "this model always fails" in raised.value.message


@pytest.mark.asyncio
async def test_unknown_model_in_a_stream_ends_it_with_backend_error(triton: TritonClient) -> None:
    # Triton reports it in-band without a final flag; the half-closed stream still ends.
    with pytest.raises(BackendError, match="unknown model"):
        await _all(triton, GenerateCall("not-in-triton", "x", unique("t")))


@pytest.mark.asyncio
async def test_metadata_and_readiness(triton: TritonClient) -> None:
    metadata = await triton.model_metadata("test-streamer")

    assert await triton.model_ready("test-streamer")
    assert Tensor("PROMPT", "BYTES", (1,)) in metadata.inputs
    assert [t.name for t in metadata.outputs] == [
        "TEXT",
        "FINISH_REASON",
        "PROMPT_TOKENS",
        "COMPLETION_TOKENS",
    ]
    assert not await triton.model_ready("not-in-triton")


@pytest.mark.asyncio
async def test_metadata_of_unknown_model_is_model_not_found(triton: TritonClient) -> None:
    with pytest.raises(ModelNotFound) as raised:
        await triton.model_metadata("not-in-triton")

    assert raised.value.reason == "MODEL_NOT_FOUND"


@pytest.mark.asyncio
async def test_unreachable_triton_is_backend_unavailable() -> None:
    (port,) = free_ports(1)  # nothing listens there
    client = TritonClient(f"127.0.0.1:{port}")
    try:
        with pytest.raises(BackendUnavailable) as streaming:
            await _all(client, GenerateCall("test-streamer", "x", "down"))
        with pytest.raises(BackendUnavailable):
            await client.model_ready("test-streamer")
    finally:
        await client.close()

    assert streaming.value.reason == "BACKEND_UNAVAILABLE"
    assert streaming.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.asyncio
async def test_ended_streams_let_triton_stop_promptly(tmp_path: Path) -> None:
    """Triton 2.51 leaks a stream cancelled just as it completes, and then cannot unload
    that model at shutdown (it waits out its 10 s exit timeout). The adapter reads every
    stream to its end instead; before that, this loop left Triton stuck about 2 runs in 3.
    """
    triton = launch_triton(tmp_path)
    try:
        client = TritonClient(triton.grpc_address)
        try:
            for i in range(50):
                await _all(client, GenerateCall("test-streamer", "a b", f"s{i}", max_tokens=2))
                with pytest.raises(BackendError):
                    await _all(client, GenerateCall("test-fail", "a", f"f{i}"))
        finally:
            await client.close()
    finally:
        stopped_after = stop_triton(triton)

    assert stopped_after < 8, triton.tail()
