"""The test models served by a real tritonserver, launched the way the inference service does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from .support import TritonProcess, drain_after_cancel, output_int, output_text

STREAM_TIMEOUT_S = 30.0


@pytest.fixture
def triton(triton_server: TritonProcess) -> TritonProcess:
    """The session's tritonserver (tests/inference/conftest.py), started as the launcher does."""
    return triton_server


def _tensor(name: str, datatype: str, value: Any, dtype: Any) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], datatype)
    tensor.set_data_from_numpy(np.array([value], dtype=dtype))
    return tensor


def _inputs(
    prompt: str,
    *,
    max_tokens: int | None = None,
    tokens_per_second: float | None = None,
) -> list[grpcclient.InferInput]:
    inputs = [_tensor("PROMPT", "BYTES", prompt.encode(), np.object_)]
    if max_tokens is not None:
        inputs.append(_tensor("MAX_TOKENS", "INT32", max_tokens, np.int32))
    if tokens_per_second is not None:
        inputs.append(_tensor("TOKENS_PER_SECOND", "FP32", tokens_per_second, np.float32))
    return inputs


async def _one_request(
    model: str, inputs: list[grpcclient.InferInput], request_id: str
) -> AsyncIterator[dict[str, Any]]:
    yield {"model_name": model, "inputs": inputs, "request_id": request_id}


def _is_final(result: grpcclient.InferResult) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


async def _stream(
    server: TritonProcess, model: str, inputs: list[grpcclient.InferInput], request_id: str
) -> list[tuple[grpcclient.InferResult | None, InferenceServerException | None]]:
    """Every (result, error) of one request's stream, read until the server ends the stream.

    Reading to the end rather than cancelling after the final response matters: a cancel that
    races the stream's completion can leave Triton holding the model, so its shutdown then
    waits out --exit-timeout-secs.
    """
    client = aioclient.InferenceServerClient(server.grpc_address)
    try:
        stream = client.stream_infer(_one_request(model, inputs, request_id))
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            return [item async for item in stream]
    finally:
        await client.close()


async def _generate(
    server: TritonProcess, prompt: str, request_id: str, **options: Any
) -> list[grpcclient.InferResult]:
    """All responses of one generation, the final one last."""
    items = await _stream(server, "test-streamer", _inputs(prompt, **options), request_id)
    assert [error for _, error in items if error is not None] == []
    results = [result for result, _ in items if result is not None]
    assert results, "no responses"
    assert [_is_final(r) for r in results] == [False] * (len(results) - 1) + [True]
    return results


def _expected_tokens(prompt: str, count: int) -> list[str]:
    words = prompt.split()
    return [words[i % len(words)] + " " for i in range(count)]


@pytest.mark.asyncio
async def test_streamer_streams_deterministic_tokens_then_stop(triton: TritonProcess) -> None:
    prompt = "the quick brown fox"
    *tokens, final = await _generate(triton, prompt, "stop-1")

    assert [output_text(r, "TEXT") for r in tokens] == _expected_tokens(prompt, 8)
    assert all(r.as_numpy("FINISH_REASON") is None for r in tokens)
    assert output_text(final, "TEXT") == ""
    assert output_text(final, "FINISH_REASON") == "stop"
    assert output_int(final, "PROMPT_TOKENS") == 4
    assert output_int(final, "COMPLETION_TOKENS") == 8


@pytest.mark.asyncio
@pytest.mark.parametrize("max_tokens", [3, 0])
async def test_streamer_max_tokens_gives_length(triton: TritonProcess, max_tokens: int) -> None:
    prompt = "one two three"
    *tokens, final = await _generate(triton, prompt, f"length-{max_tokens}", max_tokens=max_tokens)

    assert [output_text(r, "TEXT") for r in tokens] == _expected_tokens(prompt, max_tokens)
    assert output_text(final, "FINISH_REASON") == "length"
    assert output_int(final, "PROMPT_TOKENS") == 3
    assert output_int(final, "COMPLETION_TOKENS") == max_tokens


@pytest.mark.asyncio
async def test_streamer_rejects_negative_max_tokens(triton: TritonProcess) -> None:
    items = await _stream(triton, "test-streamer", _inputs("a b", max_tokens=-1), "negative")

    assert len(items) == 1
    result, error = items[0]
    assert result is None
    assert isinstance(error, InferenceServerException)
    assert "MAX_TOKENS must be >= 0" in str(error.message())


@pytest.mark.asyncio
async def test_streamer_cancel_stops_generation(triton: TritonProcess) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))  # 100 tokens: 2 s at 50 tokens/s
    client = aioclient.InferenceServerClient(triton.grpc_address)
    received: list[str] = []
    try:
        stream = client.stream_infer(
            _one_request("test-streamer", _inputs(prompt, tokens_per_second=50), "cancel-me")
        )
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for result, error in stream:
                assert error is None, f"stream error: {error}"
                received.append(output_text(result, "TEXT"))
                if len(received) == 3:
                    break
        stream.cancel()
        late = await drain_after_cancel(stream)
    finally:
        await client.close()

    assert received == _expected_tokens(prompt, 3)
    assert late <= 2
    # The server side stopped too, within a couple of tokens of the cancel.
    assert await triton.cancelled_after("cancel-me") <= len(received) + 2
    # And it still serves.
    *_tokens, final = await _generate(triton, "still alive", "after-cancel")
    assert output_text(final, "FINISH_REASON") == "stop"
    assert output_int(final, "COMPLETION_TOKENS") == 4


FAIL_MESSAGE = "test-fail: this model always fails"


@pytest.mark.asyncio
async def test_fail_model_unary_error(triton: TritonProcess) -> None:
    client = aioclient.InferenceServerClient(triton.grpc_address)
    try:
        with pytest.raises(InferenceServerException) as raised:
            await asyncio.wait_for(client.infer("test-fail", _inputs("boom")), STREAM_TIMEOUT_S)
    finally:
        await client.close()

    assert FAIL_MESSAGE in str(raised.value.message())
    assert raised.value.status() == "StatusCode.INTERNAL"


@pytest.mark.asyncio
async def test_fail_model_stream_error(triton: TritonProcess) -> None:
    items = await _stream(triton, "test-fail", _inputs("boom"), "fail-stream")

    assert len(items) == 1
    result, error = items[0]
    assert result is None
    assert isinstance(error, InferenceServerException)
    assert FAIL_MESSAGE in str(error.message())
