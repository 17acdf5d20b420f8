"""The Chroma store against a real Chroma (started by the launcher): replacing a document's
chunks, nearest-first queries, per-client collections, refused vectors, an outage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from switchboard.common.errors import SwitchboardError
from switchboard.planner.shared.config import WorkerSettings
from switchboard.planner.work.vectors import VectorStore, collection_name

from ..chroma import chroma_client
from ..stack import free_ports
from .conftest import Infra

MODEL = "test-model"


def _unit(*values: float) -> list[float]:
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


def _chunks(
    document_id: str, vectors: Sequence[list[float]], **extra: str
) -> list[tuple[str, list[float], dict[str, str | int]]]:
    return [
        (
            f"text {i} of {document_id}",
            vector,
            {"document_id": document_id, "chunk_index": i, **extra},
        )
        for i, vector in enumerate(vectors)
    ]


@pytest_asyncio.fixture
async def store(infra: Infra) -> AsyncIterator[VectorStore]:
    vectors = VectorStore(infra.chroma_url, timeout_s=10)
    try:
        yield vectors
    finally:
        await vectors.close()


@pytest.fixture
def collection() -> str:
    return f"docs-{uuid.uuid4().hex[:8]}"


async def _chroma_ids(infra: Infra, client_id: str, collection: str) -> list[str]:
    """What Chroma itself holds, read with a client of its own."""
    async with chroma_client(infra.ports.chroma) as client:
        target = await client.get_collection(
            collection_name(client_id, collection), embedding_function=None
        )
        assert target.configuration_json["hnsw"]["space"] == "cosine"
        return sorted((await target.get(include=[]))["ids"])


@pytest.mark.asyncio
async def test_query_returns_the_nearest_chunks_first(store: VectorStore, collection: str) -> None:
    vectors = [_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)]
    ids = await store.replace_document(
        "c1", collection, "doc", MODEL, _chunks("doc", vectors, lang="en")
    )
    assert ids == ["doc:0", "doc:1", "doc:2"]

    hits = await store.query("c1", collection, MODEL, _unit(0.1, 1, 0), top_k=2)

    assert [h.id for h in hits] == ["doc:1", "doc:0"]
    assert hits[0].distance == pytest.approx(1 - _unit(0.1, 1, 0)[1], abs=1e-4)
    assert (hits[0].document_id, hits[0].chunk_index, hits[0].text) == ("doc", 1, "text 1 of doc")
    assert dict(hits[0].metadata) == {"lang": "en"}


@pytest.mark.asyncio
async def test_reingesting_a_document_replaces_its_chunks_only(
    infra: Infra, store: VectorStore, collection: str
) -> None:
    three = [_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)]
    await store.replace_document("c1", collection, "a", MODEL, _chunks("a", three))
    await store.replace_document("c1", collection, "b", MODEL, _chunks("b", three[:2]))

    await store.replace_document("c1", collection, "a", MODEL, _chunks("a", [_unit(1, 1, 0)]))

    assert await _chroma_ids(infra, "c1", collection) == ["a:0", "b:0", "b:1"]
    (hit,) = await store.query("c1", collection, MODEL, _unit(1, 1, 0), top_k=1)
    assert hit.id == "a:0"
    assert hit.distance == pytest.approx(0, abs=1e-4)


@pytest.mark.asyncio
async def test_a_clients_collection_is_not_anothers(store: VectorStore, collection: str) -> None:
    await store.replace_document("owner", collection, "d", MODEL, _chunks("d", [_unit(1, 0)]))

    with pytest.raises(SwitchboardError) as raised:
        await store.query("someone-else", collection, MODEL, _unit(1, 0), top_k=1)

    assert raised.value.reason == "COLLECTION_NOT_FOUND"
    assert collection_name("owner", collection) != collection_name("someone-else", collection)
    assert collection_name("a@b:c", collection).endswith(f"-{collection}")


@pytest.mark.asyncio
async def test_vectors_of_another_model_or_dimension_are_refused(
    store: VectorStore, collection: str
) -> None:
    await store.replace_document("c1", collection, "d", MODEL, _chunks("d", [_unit(1, 0, 0)]))

    for model, vector in (("other-model", _unit(1, 0, 0)), (MODEL, _unit(1, 0))):
        with pytest.raises(SwitchboardError) as raised:
            await store.replace_document("c1", collection, "e", model, _chunks("e", [vector]))
        assert raised.value.reason == "EMBEDDING_MODEL_MISMATCH"
        with pytest.raises(SwitchboardError) as raised:
            await store.query("c1", collection, model, vector, top_k=1)
        assert raised.value.reason == "EMBEDDING_MODEL_MISMATCH"


@pytest.mark.asyncio
async def test_unknown_collection_is_not_found(store: VectorStore) -> None:
    with pytest.raises(SwitchboardError) as raised:
        await store.query("c1", f"never-{uuid.uuid4().hex[:8]}", MODEL, [1.0], top_k=3)

    assert raised.value.reason == "COLLECTION_NOT_FOUND"
    assert raised.value.code.name == "NOT_FOUND"


@pytest.mark.asyncio
async def test_chroma_down_is_unavailable() -> None:
    (port,) = free_ports(1)  # nothing listens there
    store = VectorStore(f"http://127.0.0.1:{port}", timeout_s=5)
    try:
        with pytest.raises(SwitchboardError) as raised:
            await store.query("c1", "docs", MODEL, [1.0], top_k=1)
    finally:
        await store.close()

    assert raised.value.reason == "VECTOR_STORE_UNAVAILABLE"
    assert raised.value.code.name == "UNAVAILABLE"


def test_the_url_must_name_an_http_server() -> None:
    with pytest.raises(ValueError, match="http"):
        VectorStore("valkey://127.0.0.1:1")


def test_the_worker_reads_where_chroma_is() -> None:
    assert WorkerSettings.from_env({}).chroma_url == "http://127.0.0.1:8000"
    settings = WorkerSettings.from_env({"SWITCHBOARD_WORKER_CHROMA_URL": "http://10.0.0.5:9000"})
    assert settings.chroma_url == "http://10.0.0.5:9000"
