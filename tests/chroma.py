"""A Chroma client of the test's own, to read what a pipeline stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import chromadb
from chromadb.api import AsyncClientAPI
from chromadb.config import Settings as ChromaSettings

from switchboard.planner.work.vectors import release_loop_client


@asynccontextmanager
async def chroma_client(port: int) -> AsyncIterator[AsyncClientAPI]:
    """Closes its HTTP client on leaving, in the loop that made it (see release_loop_client)."""
    client = await chromadb.AsyncHttpClient(
        host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    try:
        yield client
    finally:
        await release_loop_client()
