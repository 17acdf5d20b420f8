"""Chroma, where ingested documents' chunks live: one async HTTP client per worker process.

Collections belong to a client: client `c`'s collection `docs` is Chroma's
`sb-<12 hex of sha256(c)>-docs`, so no client reads or overwrites another's chunks. Every
collection measures cosine distance and holds only vectors we computed (it has no embedding
function: chromadb's default one would download a model). Its metadata records the embedding
model that made its vectors; vectors of another model (or dimension) are refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import chromadb
import httpx
from chromadb.api import AsyncClientAPI
from chromadb.api.async_fastapi import AsyncFastAPI
from chromadb.api.models.AsyncCollection import AsyncCollection
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import ChromaError, InvalidArgumentError, NotFoundError

from switchboard.api.jobs.v1 import pipelines_pb2
from switchboard.common.errors import (
    InvalidArgument,
    SwitchboardError,
)

from ..shared.errors import CollectionNotFound, EmbeddingModelMismatch, VectorStoreUnavailable

log = logging.getLogger(__name__)

MODEL_KEY = "embed_model"
# Chroma's own limit is larger; this keeps each request's JSON to a few MB.
UPSERT_BATCH = 256
# Fields of a chunk's metadata that SearchHit carries in fields of its own.
_OWN_FIELDS = ("document_id", "chunk_index")


def collection_name(client_id: str, collection: str) -> str:
    """Chroma's name for a client's collection (client ids may hold characters Chroma's
    names may not, hence a digest)."""
    digest = hashlib.sha256(client_id.encode()).hexdigest()[:12]
    return f"sb-{digest}-{collection}"


class VectorStore:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the Chroma URL must be http(s)://host:port, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._timeout_s = timeout_s
        self._client: AsyncClientAPI | None = None
        self._connecting = asyncio.Lock()

    async def replace_document(
        self,
        client_id: str,
        collection: str,
        document_id: str,
        model: str,
        chunks: Sequence[tuple[str, Sequence[float], Mapping[str, str | int]]],
    ) -> list[str]:
        """Stores a document's chunks (text, vector, metadata) as `{document_id}:{index}`,
        in order, and removes the chunks an earlier version had beyond them. Idempotent."""
        ids = [f"{document_id}:{i}" for i in range(len(chunks))]
        async with self._calls(collection):
            target = await self._collection(client_id, collection, model, create=True)
            _check_vectors(target, collection, model, len(chunks[0][1]))
            for at in range(0, len(chunks), UPSERT_BATCH):
                batch = chunks[at : at + UPSERT_BATCH]
                vectors: list[Sequence[float]] = [list(vector) for _, vector, _ in batch]
                await target.upsert(
                    ids=ids[at : at + UPSERT_BATCH],
                    documents=[text for text, _, _ in batch],
                    embeddings=vectors,
                    metadatas=[dict(metadata) for _, _, metadata in batch],
                )
            stale = {"$and": [{"document_id": document_id}, {"chunk_index": {"$gte": len(ids)}}]}
            await target.delete(where=cast(Any, stale))
        return ids

    async def query(
        self, client_id: str, collection: str, model: str, vector: Sequence[float], top_k: int
    ) -> list[pipelines_pb2.SearchHit]:
        """The `top_k` chunks nearest to the vector, nearest first."""
        async with self._calls(collection):
            target = await self._collection(client_id, collection, model, create=False)
            if target.get_model().dimension is None:
                return []  # nothing was ever stored in it
            _check_vectors(target, collection, model, len(vector))
            queries: list[Sequence[float]] = [list(vector)]
            found = await target.query(
                query_embeddings=queries,
                n_results=top_k,
                include=cast(Any, ["documents", "metadatas", "distances"]),
            )
        return _hits(found)

    async def close(self) -> None:
        if self._client is not None:
            await release_loop_client()
            self._client = None

    async def _connect(self) -> AsyncClientAPI:
        """The client, made on first use: making one calls Chroma, which may be down while
        the worker starts (only document jobs need it)."""
        async with self._connecting:
            if self._client is None:
                settings = ChromaSettings(anonymized_telemetry=False)
                self._client = await chromadb.AsyncHttpClient(
                    host=self._host, port=self._port, ssl=self._ssl, settings=settings
                )
            return self._client

    async def _collection(
        self, client_id: str, collection: str, model: str, *, create: bool
    ) -> AsyncCollection:
        client = await self._connect()
        name = collection_name(client_id, collection)
        if not create:
            return await client.get_collection(name, embedding_function=None)
        # Metadata and configuration apply only when the collection is created here.
        return await client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={MODEL_KEY: model},
            embedding_function=None,
        )

    @asynccontextmanager
    async def _calls(self, collection: str) -> AsyncIterator[None]:
        """Bounds the calls in time (chromadb sets no timeout) and translates their errors."""
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except SwitchboardError:
            raise
        except NotFoundError as e:
            raise CollectionNotFound(
                f"collection {collection!r} not found", metadata={"collection": collection}
            ) from e
        except InvalidArgumentError as e:
            raise InvalidArgument(f"Chroma refused the request: {e}") from e
        except (httpx.TransportError, TimeoutError, ChromaError) as e:
            raise _unavailable(e) from e
        except Exception as e:  # chromadb: a bare Exception for HTTP errors without a class
            raise _unavailable(e) from e


def _check_vectors(target: AsyncCollection, collection: str, model: str, dimension: int) -> None:
    stored_model = (target.metadata or {}).get(MODEL_KEY)
    stored_dimension = target.get_model().dimension
    if (stored_model not in (None, model)) or stored_dimension not in (None, dimension):
        raise EmbeddingModelMismatch(
            f"collection {collection!r} holds vectors of {stored_model or 'another model'} "
            f"({stored_dimension} dimensions), not of {model} ({dimension})",
            metadata={"collection": collection, "collection_model": str(stored_model)},
        )


def _unavailable(error: BaseException) -> VectorStoreUnavailable:
    log.warning("chroma call failed", extra={"fields": {"error": repr(error)}})
    return VectorStoreUnavailable("the vector store is unavailable; retry later")


def _hits(found: Any) -> list[pipelines_pb2.SearchHit]:
    """A one-query QueryResult as hits, in Chroma's order (nearest first)."""
    hits = []
    rows = zip(
        found["ids"][0],
        found["documents"][0],
        found["metadatas"][0],
        found["distances"][0],
        strict=True,
    )
    for chunk_id, text, metadata, distance in rows:
        meta = dict(metadata or {})
        hits.append(
            pipelines_pb2.SearchHit(
                id=chunk_id,
                text=text or "",
                distance=float(distance),
                document_id=str(meta.get("document_id", "")),
                chunk_index=int(meta.get("chunk_index", 0)),
                metadata={k: str(v) for k, v in meta.items() if k not in _OWN_FIELDS},
            )
        )
    return hits


async def release_loop_client() -> None:
    """Closes chromadb's HTTP client for the running event loop.

    chromadb's async client has no public close. Every async client of the process shares one
    httpx client per event loop, kept in a class-level dict, and its own clean-up closes the
    clients of every loop, dead ones included ("Event loop is closed"). Closing only this
    loop's, from this loop, is the one safe way; call it before the loop ends.
    """
    own = AsyncFastAPI._clients.pop(hash(asyncio.get_running_loop()), None)
    if own is not None:
        await own.aclose()
