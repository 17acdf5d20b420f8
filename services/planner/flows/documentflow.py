"""The workflow side of the document pipelines: `ingest-document`, `search` and `answer`.

ingest-document: extract (text as is, PDF page by page, image through OCR) → chunk → embed
and upsert into the caller's Chroma collection (one activity, so vectors never pass through
Temporal). search: embed the query (the `embed` activity) → nearest chunks. answer: search,
then one streamed generation from a prompt that numbers the chunks [1]..[k]; the result cites
every chunk given, marking those the answer refers to.

Each stage is logged as Progress events (RUNNING, then SUCCEEDED or FAILED); the `index_chunks`
activity logs its own `embed` and `upsert` stages, with fractions as batches finish.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from switchboard.api.inference.v1 import inference_pb2
    from switchboard.api.jobs.v1 import pipelines_pb2
    from switchboard.api.planner.v1 import tasks_pb2

    from ..shared.errors import NOT_RETRYABLE_DOCUMENT
    from ..shared.tasks import (
        CHUNK_TEXT,
        EXTRACT_DOCUMENT,
        INDEX_CHUNKS,
        SEARCH_COLLECTION,
        Chunked,
        ChunkTask,
        Extracted,
        Indexed,
        IndexTask,
        SearchTask,
        chunk_sizes,
    )

if TYPE_CHECKING:
    from .context import JobContext

DEFAULT_EMBED_MODEL = "default-embed"
DEFAULT_CHAT_MODEL = "default-chat"
DEFAULT_SEARCH_TOP_K = 5
DEFAULT_ANSWER_TOP_K = 4
# The sources' share of an answer prompt: SmolLM2 (default-chat) has a 2,048-token context,
# so each source is cut to an equal part of this budget.
SOURCE_BUDGET_CHARS = 4000

Status = pipelines_pb2.StageResult.Status
_T = TypeVar("_T")

# Each activity heartbeats while it runs (the worker's HeartbeatInterceptor): a worker that
# dies mid-activity is noticed within this, not after the start-to-close limit below.
HEARTBEAT = timedelta(seconds=10)
# OCR of a large image, or a long PDF, on a busy CPU.
EXTRACT_START_TO_CLOSE = timedelta(minutes=5)
CHUNK_START_TO_CLOSE = timedelta(minutes=2)
# Embedding a 1 MiB document takes tens of seconds.
INDEX_START_TO_CLOSE = timedelta(minutes=15)
SEARCH_START_TO_CLOSE = timedelta(minutes=1)
# Unlimited here: the worker's activity decides (a Chroma or inference outage is waited out
# up to the worker's horizon, anything else gets a few attempts; see `outage.py`).
DOCUMENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=15),
    maximum_attempts=0,
    non_retryable_error_types=NOT_RETRYABLE_DOCUMENT,
)
_CITATION = re.compile(r"\[(\d{1,2})\]")


async def run_ingest_document(wf: JobContext, request: pipelines_pb2.IngestDocumentInput) -> None:
    document_id = request.document_id or wf.ref.id
    extracted = await _stage(
        wf, "extract", lambda: _run(EXTRACT_DOCUMENT, request, Extracted, EXTRACT_START_TO_CLOSE)
    )
    task = ChunkTask(extracted.text, *chunk_sizes(request))
    chunked = await _stage(
        wf, "chunk", lambda: _run(CHUNK_TEXT, task, Chunked, CHUNK_START_TO_CLOSE)
    )
    index = IndexTask(
        collection=request.collection,
        document_id=document_id,
        embed_model=request.embed_model or DEFAULT_EMBED_MODEL,
        texts=chunked.texts,
        metadata=dict(request.metadata),
    )
    handle = workflow.start_activity(
        INDEX_CHUNKS,
        index,
        result_type=Indexed,
        start_to_close_timeout=INDEX_START_TO_CLOSE,
        heartbeat_timeout=HEARTBEAT,
        retry_policy=DOCUMENT_RETRY,
        # It logs its own progress: the job ends only once it has stopped, so none of its
        # events can follow the terminal one.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )
    indexed: Indexed = await wf.cancellable(handle)
    wf.job.result.ingest_document.CopyFrom(
        pipelines_pb2.IngestDocumentOutput(
            extracted_text=extracted.text,
            vector_ids=indexed.vector_ids,
            collection=request.collection,
            document_id=document_id,
        )
    )


async def run_search(wf: JobContext, request: pipelines_pb2.SearchInput) -> None:
    found = await _retrieve(
        wf, request.collection, request.query, request.embed_model, request.top_k
    )
    wf.job.result.search.CopyFrom(found)


async def run_answer(wf: JobContext, request: pipelines_pb2.AnswerInput) -> None:
    top_k = request.top_k or DEFAULT_ANSWER_TOP_K
    found = await _retrieve(wf, request.collection, request.question, request.embed_model, top_k)
    hits = list(found.hits)
    start = inference_pb2.GenerateStart(
        model=request.model or DEFAULT_CHAT_MODEL,
        prompt=answer_prompt(request.question, hits),
        params=request.params,
    )
    sources = ", ".join(f"[{n}] {hit.id}" for n, hit in enumerate(hits, 1)) or "no sources"
    task = tasks_pb2.GenerationTask(stage="generate", start=start)
    generated = await _stage(
        wf, "generate", lambda: wf.stream_generation(task), f"answering from {sources}"
    )
    wf.job.result.answer.CopyFrom(
        pipelines_pb2.AnswerOutput(
            text=generated.text,
            citations=citations(generated.text, hits),
            finish_reason=generated.finish_reason,
            usage=generated.usage,
        )
    )


def answer_prompt(question: str, hits: list[pipelines_pb2.SearchHit]) -> str:
    """The chunks numbered [1]..[k] (each cut to its share of the budget), then the question."""
    share = SOURCE_BUDGET_CHARS // max(1, len(hits))
    sources = "\n\n".join(
        f"[{n}] {' '.join(hit.text[:share].split())}" for n, hit in enumerate(hits, 1)
    )
    return (
        "Answer the question using only the numbered sources below. After each statement, "
        "cite the source it comes from as [1], [2], ... If the sources do not answer the "
        "question, say so.\n\n"
        f"Sources:\n{sources or '(none found)'}\n\nQuestion: {question}\nAnswer:"
    )


def citations(text: str, hits: list[pipelines_pb2.SearchHit]) -> list[pipelines_pb2.Citation]:
    """Every chunk the prompt numbered, `cited` when the answer says `[number]`."""
    referred = {int(n) for n in _CITATION.findall(text)}
    return [
        pipelines_pb2.Citation(number=n, chunk=hit, cited=n in referred)
        for n, hit in enumerate(hits, 1)
    ]


async def _retrieve(
    wf: JobContext, collection: str, query: str, embed_model: str, top_k: int
) -> pipelines_pb2.SearchOutput:
    embed = pipelines_pb2.EmbedInput(model=embed_model or DEFAULT_EMBED_MODEL, texts=[query])
    embedded = await _stage(wf, "embed-query", lambda: wf.embed(embed))
    task = SearchTask(
        collection=collection,
        vector=list(embedded.embeddings[0].values),
        model=embedded.model,
        top_k=top_k or DEFAULT_SEARCH_TOP_K,
    )
    return await _stage(
        wf,
        "search",
        lambda: _run(SEARCH_COLLECTION, task, pipelines_pb2.SearchOutput, SEARCH_START_TO_CLOSE),
    )


async def _stage(
    wf: JobContext, stage: str, work: Callable[[], Awaitable[_T]], message: str = ""
) -> _T:
    """One step of the job as a stage: RUNNING, then SUCCEEDED or FAILED (with the reason)."""
    await wf.progress(stage, Status.RUNNING, message)
    try:
        output = await work()
    except ActivityError as err:
        if not isinstance(err.cause, CancelledError):  # a cancel just ends with the job
            await wf.progress(stage, Status.FAILED, _why(err))
        raise
    await wf.progress(stage, Status.SUCCEEDED, fraction=1.0)
    return output


async def _run(activity: str, arg: Any, result: type[_T], budget: timedelta) -> _T:
    output: _T = await workflow.execute_activity(
        activity,
        arg,
        result_type=result,
        start_to_close_timeout=budget,
        heartbeat_timeout=HEARTBEAT,
        retry_policy=DOCUMENT_RETRY,
    )
    return output


def _why(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}"
    return f"{type(cause).__name__}: {cause}"
