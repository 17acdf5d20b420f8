"""Embed: texts to vectors, in Triton requests of up to `chunk_size` texts, sent at once.

Triton's dynamic batcher merges concurrent requests into one execution (up to the model's
max_batch_size), so how the texts of one call are split only trades gRPC messages against
parallelism; docs/inference.md has the measurements behind the default.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy as np
import prometheus_client

from .models import Model
from .triton import TritonClient

T = TypeVar("T")

TEXTS = prometheus_client.Counter(
    "switchboard_inference_embedded_texts_total", "Texts embedded, by model.", ["model"]
)

Vectors = np.ndarray[Any, np.dtype[np.float32]]


async def embed(
    triton: TritonClient, model: Model, texts: Sequence[str], timeout_s: float, chunk_size: int
) -> Vectors:
    """A [len(texts), dim] array, rows in the order of `texts`."""
    # A request holds at most the model's batch; without a batch dimension, one text.
    chunk_size = max(1, min(chunk_size, model.max_batch_size))
    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    arrays = await all_or_nothing(
        [
            triton.embed(model.triton_name, chunk, batched=model.batched, timeout_s=timeout_s)
            for chunk in chunks
        ]
    )
    TEXTS.labels(model.name).inc(len(texts))
    return np.concatenate(arrays)


async def all_or_nothing(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Every result in order; on the first failure the others are cancelled and it raises."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and (error := task.exception()) is not None:
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
