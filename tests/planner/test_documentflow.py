"""The document pipelines as jobs: the real planner, worker, Temporal, Valkey and Chroma, and
the real inference service with Triton (MiniLM embeddings, PP-OCR, SmolLM2)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import pytest_asyncio
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2, inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.planner.flows.documentflow import answer_prompt, citations
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.activities import Activities
from switchboard.planner.work.documents import Documents
from switchboard.planner.work.vectors import VectorStore, collection_name
from switchboard.planner.work.worker import build_worker

from ..chroma import chroma_client
from ..document_files import (
    PARAGRAPH_CHUNK_TOKENS,
    PARAGRAPHS,
    VIOLINS,
    pdf,
    png,
    three_topics,
    words,
)
from .conftest import Infra
from .fake_inference import FakeInference
from .support import Planner, eventually, running_planner, states

Job = jobs_pb2.Job
TERMINAL = (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)
Status = pipelines_pb2.StageResult.Status
# Real models on two shared cores: OCR and a short generation take seconds, not milliseconds.
JOB_WAIT_S = 120.0


@asynccontextmanager
async def document_worker(
    temporal_client: Client, valkey: Valkey, inference: str, chroma_url: str, task_queue: str
) -> AsyncIterator[None]:
    """The worker as `worker.run` builds it: every activity, the document ones included."""
    channel = grpc.aio.insecure_channel(inference)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    vectors = VectorStore(chroma_url)
    log = EventLog(valkey)
    documents = Documents(stub, log, vectors)
    worker = build_worker(
        temporal_client, task_queue, Activities(stub, log), grace_seconds=1.0, documents=documents
    )
    try:
        async with worker:
            yield
    finally:
        await vectors.close()
        await channel.close(grace=None)


@pytest_asyncio.fixture
async def planner(
    temporal_client: Client, valkey_client: Valkey, infra: Infra, real_inference: str
) -> AsyncIterator[Planner]:
    task_queue = f"test-{uuid.uuid4().hex}"
    async with (
        running_planner(temporal_client, valkey_client, FakeInference(), task_queue) as running,
        document_worker(
            temporal_client, valkey_client, real_inference, infra.chroma_url, task_queue
        ),
    ):
        yield running


async def _run(
    planner: Planner, pipeline: str, **job_input: object
) -> tuple[Job, list[events_pb2.JobEvent]]:
    """Creates the job, follows its events to the end; the job as GetJob shows it then."""
    job = Job(pipeline=pipeline, input=pipelines_pb2.JobInput(**job_input))  # type: ignore[arg-type]
    created = await planner.stub.CreateJob(
        jobs_pb2.CreateJobRequest(job=job), metadata=planner.md()
    )
    request = jobs_pb2.WatchJobRequest(name=created.name)
    seen: list[events_pb2.JobEvent] = []
    async with asyncio.timeout(JOB_WAIT_S):
        async for event in planner.stub.WatchJob(request, metadata=planner.md()):
            seen.append(event)

    async def shown_ended() -> bool:
        # GetJob shows the end a moment after its event is logged (docs/planner.md).
        return (await planner.get(created.name)).state in TERMINAL

    await eventually(shown_ended)
    return await planner.get(created.name), seen


async def _ingest(
    planner: Planner, document: pipelines_pb2.Document, collection: str, **fields: Any
) -> tuple[Job, list[events_pb2.JobEvent]]:
    request = pipelines_pb2.IngestDocumentInput(collection=collection, document=document, **fields)
    return await _run(planner, "ingest-document", ingest_document=request)


def _progress(seen: list[events_pb2.JobEvent]) -> list[tuple[str, str]]:
    return [
        (e.progress.stage, Status.Name(e.progress.status)) for e in seen if e.HasField("progress")
    ]


def _reason(job: Job) -> str:
    return SwitchboardError.from_status(job.error).reason


async def _chroma_documents(infra: Infra, client_id: str, collection: str) -> dict[str, str]:
    """Chroma's own view of a collection: chunk id → chunk text."""
    async with chroma_client(infra.ports.chroma) as client:
        target = await client.get_collection(
            collection_name(client_id, collection), embedding_function=None
        )
        stored = await target.get(include=["documents", "embeddings"])
    vectors = stored["embeddings"]
    assert vectors is not None
    assert [len(vector) for vector in vectors] == [384] * len(stored["ids"])
    return dict(zip(stored["ids"], stored["documents"] or [], strict=True))


def _collection() -> str:
    return f"docs-{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
async def test_a_text_is_ingested_chunk_by_chunk(planner: Planner, infra: Infra) -> None:
    collection = _collection()
    document = pipelines_pb2.Document(text=three_topics())

    job, seen = await _ingest(
        planner, document, collection, chunk_tokens=PARAGRAPH_CHUNK_TOKENS, chunk_overlap=0
    )

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    output = job.result.ingest_document
    assert output.extracted_text == three_topics()
    job_id = job.name.removeprefix("jobs/")
    assert list(output.vector_ids) == [f"{job_id}:{i}" for i in range(3)]
    assert (output.collection, output.document_id) == (collection, job_id)
    stored = await _chroma_documents(infra, planner.client_id, collection)
    assert stored == {f"{job_id}:{i}": text for i, text in enumerate(PARAGRAPHS)}
    assert _progress(seen) == [
        ("extract", "RUNNING"),
        ("extract", "SUCCEEDED"),
        ("chunk", "RUNNING"),
        ("chunk", "SUCCEEDED"),
        ("embed", "RUNNING"),
        ("embed", "SUCCEEDED"),
        ("upsert", "RUNNING"),
        ("upsert", "SUCCEEDED"),
    ]


@pytest.mark.asyncio
async def test_a_pdf_is_ingested(planner: Planner, infra: Infra) -> None:
    collection = _collection()
    document = pipelines_pb2.Document(pdf=pdf(PARAGRAPHS))

    job, seen = await _ingest(planner, document, collection, document_id="report.pdf")

    assert states(seen)[-1] == "SUCCEEDED", job.error
    output = job.result.ingest_document
    assert words(output.extracted_text) == words(" ".join(PARAGRAPHS))
    # Under the 500-token default the three pages make one chunk.
    assert list(output.vector_ids) == ["report.pdf:0"]
    stored = await _chroma_documents(infra, planner.client_id, collection)
    assert words(stored["report.pdf:0"]) == words(" ".join(PARAGRAPHS))


@pytest.mark.asyncio
async def test_an_image_is_ingested_through_ocr(planner: Planner, infra: Infra) -> None:
    collection = _collection()
    lines = ["Switchboard reads scanned pages", "Violins have four strings"]

    job, seen = await _ingest(planner, pipelines_pb2.Document(image=png(lines)), collection)

    assert states(seen)[-1] == "SUCCEEDED", job.error
    output = job.result.ingest_document
    assert words(output.extracted_text) == words(" ".join(lines))
    stored = await _chroma_documents(infra, planner.client_id, collection)
    assert list(stored) == list(output.vector_ids)
    assert words(" ".join(stored.values())) == words(" ".join(lines))


@pytest.mark.asyncio
async def test_search_finds_the_chunk_about_the_query(planner: Planner) -> None:
    collection = _collection()
    document = pipelines_pb2.Document(text=three_topics())
    await _ingest(
        planner, document, collection, chunk_tokens=PARAGRAPH_CHUNK_TOKENS, chunk_overlap=0,
        document_id="guide", metadata={"topic": "mixed"},
    )  # fmt: skip

    search = pipelines_pb2.SearchInput(collection=collection, query="string instruments")
    job, seen = await _run(planner, "search", search=search)

    assert states(seen)[-1] == "SUCCEEDED", job.error
    hits = job.result.search.hits
    assert [h.id for h in hits][:1] == ["guide:1"]
    assert (hits[0].text, hits[0].document_id, hits[0].chunk_index) == (VIOLINS, "guide", 1)
    assert hits[0].metadata["topic"] == "mixed"
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    assert len(hits) == 3  # top_k 5, and the collection holds three chunks
    assert _progress(seen) == [
        ("embed-query", "RUNNING"),
        ("embed-query", "SUCCEEDED"),
        ("search", "RUNNING"),
        ("search", "SUCCEEDED"),
    ]


@pytest.mark.asyncio
async def test_answer_generates_from_the_numbered_chunks(planner: Planner) -> None:
    collection = _collection()
    await _ingest(
        planner, pipelines_pb2.Document(text=three_topics()), collection,
        chunk_tokens=PARAGRAPH_CHUNK_TOKENS, chunk_overlap=0, document_id="guide",
    )  # fmt: skip
    params = inference_pb2.SamplingParams(max_tokens=24, temperature=0)
    answer = pipelines_pb2.AnswerInput(
        collection=collection, question="How many strings does a violin have?", top_k=2,
        params=params,
    )  # fmt: skip

    job, seen = await _run(planner, "answer", answer=answer)

    assert states(seen)[-1] == "SUCCEEDED", job.error
    output = job.result.answer
    assert output.text.strip()
    assert output.text == "".join(e.token.text for e in seen if e.HasField("token"))
    assert {e.token.stage for e in seen if e.HasField("token")} == {"generate"}
    assert [c.number for c in output.citations] == [1, 2]
    assert output.citations[0].chunk.id == "guide:1"
    for citation in output.citations:
        assert citation.cited == (f"[{citation.number}]" in output.text)
    (generating,) = [
        e.progress
        for e in seen
        if e.progress.stage == "generate" and e.progress.status == Status.RUNNING
    ]
    assert generating.message == (
        f"answering from [1] {output.citations[0].chunk.id}, [2] {output.citations[1].chunk.id}"
    )
    assert [stage for stage, _ in _progress(seen)][-2:] == ["generate", "generate"]


def test_the_answer_prompt_numbers_the_chunks_and_cites_what_the_answer_names() -> None:
    hits = [
        pipelines_pb2.SearchHit(id="d:1", text="Violins have\nfour strings."),
        pipelines_pb2.SearchHit(id="d:0", text="Volcanoes erupt."),
        pipelines_pb2.SearchHit(id="d:2", text="Taxes are due."),
    ]

    prompt = answer_prompt("How many strings?", hits)

    assert "[1] Violins have four strings.\n\n[2] Volcanoes erupt.\n\n[3] Taxes are due." in prompt
    assert prompt.endswith("Question: How many strings?\nAnswer:")
    cited = citations("Four [1], not lava [3].", hits)
    assert [(c.number, c.chunk.id, c.cited) for c in cited] == [
        (1, "d:1", True),
        (2, "d:0", False),
        (3, "d:2", True),
    ]


def test_each_source_gets_an_equal_share_of_the_prompt() -> None:
    hits = [pipelines_pb2.SearchHit(id=f"d:{i}", text="word " * 2000) for i in range(4)]

    prompt = answer_prompt("q", hits)

    assert 4000 <= len(prompt) < 4600


@pytest.mark.asyncio
async def test_a_broken_pdf_fails_the_job_as_unreadable(planner: Planner) -> None:
    document = pipelines_pb2.Document(pdf=b"%PDF-1.7\nnot a PDF after all")

    job, seen = await _ingest(planner, document, _collection())

    assert states(seen) == ["QUEUED", "RUNNING", "FAILED"]
    assert job.state == Job.FAILED
    assert _reason(job) == "DOCUMENT_UNREADABLE"
    assert _progress(seen) == [("extract", "RUNNING"), ("extract", "FAILED")]
    assert "DOCUMENT_UNREADABLE" in seen[-2].progress.message


@pytest.mark.asyncio
async def test_searching_a_missing_collection_fails_the_job(planner: Planner) -> None:
    search = pipelines_pb2.SearchInput(collection=_collection(), query="anything")

    job, seen = await _run(planner, "search", search=search)

    assert states(seen)[-1] == "FAILED"
    assert _reason(job) == "COLLECTION_NOT_FOUND"


@pytest.mark.asyncio
async def test_get_and_list_do_not_carry_the_document(planner: Planner) -> None:
    content = pdf(PARAGRAPHS)
    job, _ = await _ingest(planner, pipelines_pb2.Document(pdf=content), _collection())

    listed = await planner.stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=planner.md())

    (shown,) = [j for j in listed.jobs if j.name == job.name]
    for seen_job in (job, shown):
        assert seen_job.input.ingest_document.collection
        assert seen_job.input.ingest_document.document.WhichOneof("content") is None
        assert content not in seen_job.SerializeToString()
    assert job.result.ingest_document.vector_ids
