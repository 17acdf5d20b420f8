"""Embedding requests: chunks sent at once, rows back in order, all or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from switchboard.inference.embedding import all_or_nothing, embed
from switchboard.inference.errors import BackendError
from switchboard.inference.models import EMBED, Model
from switchboard.inference.triton import TritonClient

from .support import TritonProcess

ECHO = Model("test-echo-embed", "test-echo-embed", EMBED, max_batch_size=32)


def echo_vector(text: str) -> list[float]:
    """test-echo-embed's documented function: byte histogram mod 8, L2-normalised."""
    counts = np.bincount(np.frombuffer(text.encode(), dtype=np.uint8) % 8, minlength=8)
    vector = counts.astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return list(vector / norm if norm else vector)


@pytest_asyncio.fixture
async def triton(triton_server: TritonProcess) -> AsyncIterator[TritonClient]:
    client = TritonClient(triton_server.grpc_address)
    yield client
    await client.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("chunk_size", [1, 7, 32, 256])  # 256: capped at the model's 32
async def test_rows_come_back_in_order_however_the_texts_are_split(
    triton: TritonClient, chunk_size: int
) -> None:
    texts = [f"text {i} " + "x" * (i % 13) for i in range(70)] + [""]

    vectors = await embed(triton, ECHO, texts, timeout_s=10, chunk_size=chunk_size)

    assert vectors.shape == (71, 8)
    np.testing.assert_allclose(vectors, [echo_vector(t) for t in texts], rtol=1e-6)


@pytest.mark.asyncio
async def test_the_first_failure_cancels_the_rest_and_is_raised() -> None:
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def fails() -> int:
        await asyncio.sleep(0.01)
        raise BackendError("chunk failed")

    with pytest.raises(BackendError, match="chunk failed"):
        await asyncio.wait_for(all_or_nothing([slow(0), fails(), slow(2)]), 5)

    assert sorted(cancelled) == [0, 2]


@pytest.mark.asyncio
async def test_results_keep_the_order_of_the_calls() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert await all_or_nothing([after(0.03, 1), after(0.0, 2), after(0.01, 3)]) == [1, 2, 3]
