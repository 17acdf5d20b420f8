"""What the workflow and the worker agree on: the names registered with Temporal (the
workflow, its query and memo, each activity) and the dataclasses the document activities take
and return. Both sides import these; the names must never change (running histories refer to
them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from switchboard.api.jobs.v1 import pipelines_pb2

WORKFLOW = "JobWorkflow"
QUERY_SNAPSHOT = "snapshot"
MEMO_JOB = "job"

GENERATE = "generate"
GENERATE_STAGE = "generate_stage"
EMBED = "embed"
PUBLISH_EVENT = "publish_event"
DELIVER_WEBHOOK = "deliver_webhook"
LOAD_SESSION = "load_session"
APPEND_TURN = "append_turn"
EXTRACT_DOCUMENT = "extract_document"
CHUNK_TEXT = "chunk_text"
INDEX_CHUNKS = "index_chunks"
SEARCH_COLLECTION = "search_collection"

DEFAULT_CHUNK_TOKENS = 500
DEFAULT_CHUNK_OVERLAP = 50


@dataclass(frozen=True)
class Extracted:
    text: str


@dataclass(frozen=True)
class ChunkTask:
    text: str
    chunk_tokens: int
    chunk_overlap: int


@dataclass(frozen=True)
class Chunked:
    texts: list[str]


@dataclass(frozen=True)
class IndexTask:
    collection: str
    document_id: str
    embed_model: str
    texts: list[str]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Indexed:
    vector_ids: list[str]
    # The model that embedded them (after aliases).
    model: str


@dataclass(frozen=True)
class SearchTask:
    collection: str
    vector: list[float]
    model: str
    top_k: int


def chunk_sizes(request: pipelines_pb2.IngestDocumentInput) -> tuple[int, int]:
    """(chunk_tokens, chunk_overlap) with the defaults applied: the server checks them at
    create, the workflow passes them to `chunk_text`."""
    overlap = request.chunk_overlap if request.HasField("chunk_overlap") else DEFAULT_CHUNK_OVERLAP
    return request.chunk_tokens or DEFAULT_CHUNK_TOKENS, overlap
