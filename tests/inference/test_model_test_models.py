"""test-echo-embed and test-hang, the stand-in models, served by the session's real Triton."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from .support import TritonProcess, unique

TIMEOUT_S = 30.0
ECHO = "test-echo-embed"
HANG = "test-hang"


def _texts(texts: list[str]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    return tensor


async def _embed(
    client: aioclient.InferenceServerClient, texts: list[str]
) -> npt.NDArray[np.float32]:
    result = await asyncio.wait_for(client.infer(ECHO, [_texts(texts)]), TIMEOUT_S)
    vectors: npt.NDArray[np.float32] | None = result.as_numpy("EMBEDDING")
    assert vectors is not None
    return vectors


def _expected(text: str) -> list[float]:
    """The documented function, written independently: bytes folded into 8 buckets."""
    counts = [0] * 8
    for byte in text.encode():
        counts[byte % 8] += 1
    norm = math.sqrt(sum(c * c for c in counts))
    return [c / norm if norm else 0.0 for c in counts]


async def _batched_executions(client: aioclient.InferenceServerClient, model: str) -> int:
    """How many times Triton has run the model on more than one request at once."""
    stats: Any = await client.get_inference_statistics(model, as_json=True)
    batches = stats["model_stats"][0].get("batch_stats", [])
    return sum(int(b["compute_infer"]["count"]) for b in batches if int(b["batch_size"]) > 1)


@pytest.mark.asyncio
async def test_echo_embed_is_the_documented_function(
    client: aioclient.InferenceServerClient,
) -> None:
    texts = ["hello", "hello", "Grüße, 世界", ""]
    vectors = await _embed(client, texts)

    assert vectors.shape == (4, 8)
    assert vectors.dtype == np.float32
    for text, vector in zip(texts, vectors, strict=True):
        assert vector.tolist() == pytest.approx(_expected(text), abs=1e-6)
    assert vectors[0].tolist() == vectors[1].tolist()  # deterministic
    assert vectors[3].tolist() == [0.0] * 8  # the empty string
    assert float(np.linalg.norm(vectors[2])) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.asyncio
async def test_echo_embed_batches_concurrent_requests_without_mixing_rows(
    client: aioclient.InferenceServerClient,
) -> None:
    texts = [f"text number {i} " + "x" * i for i in range(16)]
    before = await _batched_executions(client, ECHO)

    vectors = await asyncio.gather(*(_embed(client, [t]) for t in texts))

    for text, vector in zip(texts, vectors, strict=True):
        assert vector.shape == (1, 8)
        assert vector[0].tolist() == pytest.approx(_expected(text), abs=1e-6)
    assert await _batched_executions(client, ECHO) > before


async def _one_request(prompt: str, request_id: str) -> AsyncIterator[dict[str, Any]]:
    tensor = grpcclient.InferInput("PROMPT", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    yield {"model_name": HANG, "inputs": [tensor], "request_id": request_id}


async def _collect(stream: Any, into: list[Any]) -> None:
    try:
        async for item in stream:
            into.append(item)
    except asyncio.CancelledError:
        # grpc.aio ends its own cancelled call this way; a real task cancel must propagate.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def _hang_then_cancel(triton: TritonProcess, silent_s: float) -> list[Any]:
    request_id = unique("hang")
    client = aioclient.InferenceServerClient(triton.grpc_address)
    received: list[Any] = []
    try:
        stream = client.stream_infer(_one_request("anyone there?", request_id))
        reader = asyncio.create_task(_collect(stream, received))
        await asyncio.sleep(silent_s)
        assert not reader.done(), "the stream ended by itself"
        stream.cancel()
        await asyncio.wait_for(reader, TIMEOUT_S)
    finally:
        await client.close()
    # The model saw the cancel and ended the request on the server side.
    await triton.logged(rf"test-hang: request '{re.escape(request_id)}' cancelled")
    return received


@pytest.mark.asyncio
async def test_hang_is_silent_until_cancelled_then_ends(triton_server: TritonProcess) -> None:
    assert await _hang_then_cancel(triton_server, silent_s=0.5) == []
    # The model is free again: a second request behaves the same.
    assert await _hang_then_cancel(triton_server, silent_s=0.2) == []
