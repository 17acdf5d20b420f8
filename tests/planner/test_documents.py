"""The document activities, run one by one (temporalio's ActivityEnvironment stands in for a
worker: no workflow around them) against the real inference service with Triton, a real
Chroma and a real Valkey event log."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2, inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, pipelines_pb2
from switchboard.common.jobref import JobRef
from switchboard.planner.shared.tasks import ChunkTask, IndexTask, SearchTask
from switchboard.planner.stores import events
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.documents import EMBED_BATCH, Documents
from switchboard.planner.work.vectors import VectorStore

from ..document_files import PARAGRAPHS, pdf, png, three_topics, words
from ..stack import free_ports
from .conftest import Infra

Status = pipelines_pb2.StageResult.Status


@dataclasses.dataclass
class Run:
    """The activities, and an environment that runs them as one job's would run."""

    documents: Documents
    inference: inference_pb2_grpc.InferenceServiceAsyncStub
    env: ActivityEnvironment
    client_id: str
    valkey: Valkey

    @property
    def wid(self) -> str:
        return self.env.info.workflow_id or ""

    async def logged(self) -> list[events_pb2.JobEvent]:
        entries = await self.valkey.xrange(events.stream_key(JobRef.from_workflow_id(self.wid)))
        return [events_pb2.JobEvent.FromString(fields[b"e"]) for _, fields in entries]


@pytest_asyncio.fixture
async def run(infra: Infra, valkey_client: Valkey, real_inference: str) -> AsyncIterator[Run]:
    channel = grpc.aio.insecure_channel(real_inference)
    vectors = VectorStore(infra.chroma_url)
    env = ActivityEnvironment()
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    job_id = f"j-{uuid.uuid4().hex[:20]}"
    env.info = dataclasses.replace(env.info, workflow_id=JobRef(client_id, job_id).workflow_id)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    try:
        documents = Documents(stub, EventLog(valkey_client), vectors)
        yield Run(documents, stub, env, client_id, valkey_client)
    finally:
        await vectors.close()
        await channel.close(grace=None)


def _ingest(
    document: pipelines_pb2.Document, chunk_tokens: int = 0, chunk_overlap: int | None = None
) -> pipelines_pb2.IngestDocumentInput:
    return pipelines_pb2.IngestDocumentInput(
        collection="docs", document=document, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap
    )


async def _failure(run: Run, activity: object, arg: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await run.env.run(activity, arg)  # type: ignore[arg-type]
    return raised.value


@pytest.mark.asyncio
async def test_text_is_extracted_as_it_is(run: Run) -> None:
    text = three_topics()
    extracted = await run.env.run(
        run.documents.extract_document, _ingest(pipelines_pb2.Document(text=text))
    )
    assert extracted.text == text


@pytest.mark.asyncio
async def test_a_pdf_is_extracted_page_by_page(run: Run) -> None:
    document = pipelines_pb2.Document(pdf=pdf(PARAGRAPHS[:2]))

    extracted = await run.env.run(run.documents.extract_document, _ingest(document))

    first, second = extracted.text.split("\n\n")
    assert words(first) == words(PARAGRAPHS[0])
    assert words(second) == words(PARAGRAPHS[1])


@pytest.mark.asyncio
async def test_an_image_is_read_by_ocr(run: Run) -> None:
    lines = ["Switchboard reads scanned pages", "Violins have four strings"]
    document = pipelines_pb2.Document(image=png(lines))

    extracted = await run.env.run(run.documents.extract_document, _ingest(document))

    assert words(extracted.text) == words(" ".join(lines))


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (pipelines_pb2.Document(pdf=b"%PDF-1.7\nthis is no PDF at all"), "DOCUMENT_UNREADABLE"),
        (pipelines_pb2.Document(pdf=pdf(["cut short"])[:300]), "DOCUMENT_UNREADABLE"),
        (pipelines_pb2.Document(image=b"\x89PNG\r\n\x1a\n not really"), "DOCUMENT_UNREADABLE"),
        (pipelines_pb2.Document(pdf=pdf([""])), "DOCUMENT_EMPTY"),
        (pipelines_pb2.Document(image=png([])), "DOCUMENT_EMPTY"),
        (pipelines_pb2.Document(text=" \n\t "), "DOCUMENT_EMPTY"),
    ],
)
@pytest.mark.asyncio
async def test_broken_or_empty_documents_fail_for_good(
    run: Run, document: pipelines_pb2.Document, reason: str
) -> None:
    failure = await _failure(run, run.documents.extract_document, _ingest(document))

    assert failure.type == reason
    assert failure.non_retryable


@pytest.mark.asyncio
async def test_an_overlap_as_long_as_the_chunk_fails_before_extraction(run: Run) -> None:
    request = _ingest(pipelines_pb2.Document(pdf=b"never read"), chunk_tokens=40, chunk_overlap=40)

    failure = await _failure(run, run.documents.extract_document, request)

    assert (failure.type, failure.non_retryable) == ("INVALID_ARGUMENT", True)


@pytest.mark.asyncio
async def test_chunking_uses_the_task_sizes(run: Run) -> None:
    chunked = await run.env.run(run.documents.chunk_text, ChunkTask(three_topics(), 48, 0))

    assert chunked.texts == list(PARAGRAPHS)


@pytest.mark.asyncio
async def test_indexed_chunks_are_found_by_meaning(run: Run) -> None:
    collection = f"docs-{uuid.uuid4().hex[:8]}"
    task = IndexTask(collection, "guide", "default-embed", list(PARAGRAPHS), {"source": "test"})

    indexed = await run.env.run(run.documents.index_chunks, task)

    assert indexed.vector_ids == ["guide:0", "guide:1", "guide:2"]
    assert indexed.model == "all-minilm-l6-v2"
    request = inference_pb2.EmbedRequest(model="default-embed", texts=["string instruments"])
    query = await run.inference.Embed(request)
    search = SearchTask(collection, list(query.embeddings[0].values), query.model, 3)
    found = await run.env.run(run.documents.search_collection, search)
    assert len(found.hits) == 3
    assert found.hits[0].id == "guide:1"
    best = found.hits[0]
    assert (best.text, best.document_id, best.chunk_index) == (PARAGRAPHS[1], "guide", 1)
    assert dict(best.metadata) == {"source": "test", "job": JobRef.from_workflow_id(run.wid).name}
    assert best.distance < found.hits[1].distance


@pytest.mark.asyncio
async def test_indexing_embeds_in_batches_and_logs_its_progress(run: Run) -> None:
    texts = [f"chunk number {i}" for i in range(EMBED_BATCH + 8)]
    task = IndexTask(f"docs-{uuid.uuid4().hex[:8]}", "d", "default-embed", texts)

    indexed = await run.env.run(run.documents.index_chunks, task)

    assert indexed.vector_ids == [f"d:{i}" for i in range(len(texts))]
    progress = [
        (e.progress.stage, e.progress.status, e.progress.fraction) for e in await run.logged()
    ]
    assert progress == [
        ("embed", Status.RUNNING, 0.0),
        ("embed", Status.RUNNING, pytest.approx(EMBED_BATCH / len(texts))),
        ("embed", Status.SUCCEEDED, 1.0),
        ("upsert", Status.RUNNING, 0.0),
        ("upsert", Status.SUCCEEDED, 1.0),
    ]


@pytest.mark.asyncio
async def test_searching_an_unknown_collection_fails_for_good(run: Run) -> None:
    search = SearchTask(f"none-{uuid.uuid4().hex[:8]}", [0.1] * 384, "all-minilm-l6-v2", 5)

    failure = await _failure(run, run.documents.search_collection, search)

    assert (failure.type, failure.non_retryable) == ("COLLECTION_NOT_FOUND", True)


@pytest.mark.asyncio
async def test_another_models_vectors_are_refused(run: Run) -> None:
    collection = f"docs-{uuid.uuid4().hex[:8]}"
    await run.env.run(
        run.documents.index_chunks, IndexTask(collection, "a", "default-embed", ["minilm"])
    )

    failure = await _failure(
        run, run.documents.index_chunks, IndexTask(collection, "b", "test-echo-embed", ["echo"])
    )

    assert (failure.type, failure.non_retryable) == ("EMBEDDING_MODEL_MISMATCH", True)


@pytest.mark.asyncio
async def test_chroma_down_is_retried(run: Run) -> None:
    (port,) = free_ports(1)  # nothing listens there
    run.documents._vectors = VectorStore(f"http://127.0.0.1:{port}", timeout_s=5)

    failure = await _failure(
        run, run.documents.index_chunks, IndexTask("docs", "a", "default-embed", ["text"])
    )

    assert (failure.type, failure.non_retryable) == ("VECTOR_STORE_UNAVAILABLE", False)
