"""The Triton adapter against the real tritonserver: streams, metadata, error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from tritonclient.grpc import service_pb2

from switchboard.inference import tensors
from switchboard.inference import triton as triton_module
from switchboard.inference.errors import (
    BackendError,
    BackendRejectedInput,
    BackendUnavailable,
    ModelNotFound,
)
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
        with pytest.raises(BackendUnavailable):
            await client.embed("test-echo-embed", ["x"], batched=True, timeout_s=5)
        with pytest.raises(BackendUnavailable):
            await client.repository()
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


@pytest.mark.asyncio
async def test_unary_input_the_model_does_not_take_is_backend_rejected_input(
    triton: TritonClient,
) -> None:
    # test-fail takes PROMPT, not TEXT: Triton answers INVALID_ARGUMENT before the model runs.
    with pytest.raises(BackendRejectedInput) as raised:
        await triton.embed("test-fail", ["x"], batched=False, timeout_s=5)

    assert raised.value.reason == "BACKEND_REJECTED_INPUT"
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.metadata["triton_code"] == "INVALID_ARGUMENT"


@pytest.mark.asyncio
async def test_unary_call_to_an_unknown_model_is_model_not_found(triton: TritonClient) -> None:
    with pytest.raises(ModelNotFound):
        await triton.embed("not-in-triton", ["x"], batched=True, timeout_s=5)


@pytest.mark.asyncio
async def test_unary_model_error_is_backend_error(triton: TritonClient) -> None:
    # test-fail answers every request with an error of its own (gRPC INTERNAL).
    request = service_pb2.ModelInferRequest(model_name="test-fail")
    tensors.add_bytes(request, "PROMPT", [b"x"], batched=False)
    with pytest.raises(BackendError, match="this model always fails"):
        await triton._infer("test-fail", request, timeout_s=5)


@pytest.mark.asyncio
async def test_repository_lists_every_model(triton: TritonClient) -> None:
    assert {"test-streamer", "test-fail"} <= await triton.repository()


def test_a_chat_call_sends_messages_and_sampling_inputs() -> None:
    call = GenerateCall(
        "chat",
        "",
        "r1",
        max_tokens=5,
        messages='[{"role": "user", "content": "hi"}]',
        temperature=0.0,
        top_p=0.5,
        stop=("a", "b"),
        seed=7,
    )
    request = triton_module._generate_request(call)

    inputs = {i.name: (i.datatype, list(i.shape)) for i in request.inputs}
    assert inputs == {
        "MESSAGES": ("BYTES", [1]),
        "MAX_TOKENS": ("INT32", [1]),
        "TEMPERATURE": ("FP32", [1]),
        "TOP_P": ("FP32", [1]),
        "STOP": ("BYTES", [1]),
        "SEED": ("INT64", [1]),
    }
    stop = request.raw_input_contents[[i.name for i in request.inputs].index("STOP")]
    assert stop[4:] == b'["a", "b"]'  # a 4-byte length, then the JSON


def test_a_raw_call_sends_only_what_it_has() -> None:
    request = triton_module._generate_request(GenerateCall("raw", "hello", "r2"))

    assert [i.name for i in request.inputs] == ["PROMPT"]


@pytest.mark.parametrize(
    ("code", "reason", "ours"),
    [
        (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", grpc.StatusCode.UNAVAILABLE),
        (grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND", grpc.StatusCode.NOT_FOUND),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "BACKEND_TIMEOUT", grpc.StatusCode.DEADLINE_EXCEEDED),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "BACKEND_REJECTED_INPUT",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "QUEUE_FULL", grpc.StatusCode.RESOURCE_EXHAUSTED),
        (grpc.StatusCode.INTERNAL, "BACKEND_ERROR", grpc.StatusCode.INTERNAL),
        (grpc.StatusCode.UNKNOWN, "BACKEND_ERROR", grpc.StatusCode.INTERNAL),
    ],
)
def test_triton_status_codes_are_translated_by_code(
    code: grpc.StatusCode, reason: str, ours: grpc.StatusCode
) -> None:
    """Built, not received: Triton cannot be made to answer every code on demand."""
    metadata = grpc.aio.Metadata()
    error = grpc.aio.AioRpcError(code, metadata, metadata, "whatever Triton said", None)

    translated = triton_module._from_rpc_error(error, "m")

    assert (translated.reason, translated.code) == (reason, ours)
    assert translated.metadata == {"model": "m", "triton_code": code.name}
    if reason == "QUEUE_FULL":  # Triton's own queue: callers get a RetryInfo too
        assert len(translated.details) == 1
