"""The document pipelines' activities: extract a document's text, chunk it, embed and upsert
the chunks into Chroma, and search a collection.

Each is idempotent, so Temporal may retry any of them: extraction and chunking are pure,
upserts write the same ids (`{document_id}:{index}`) again, and a search only reads. A
broken or empty document fails at once (DOCUMENT_UNREADABLE, DOCUMENT_EMPTY); an outage of
Chroma (VECTOR_STORE_UNAVAILABLE) or of the inference service is retried.
"""

from __future__ import annotations

import asyncio
import io
import logging

import grpc
import pypdf
from pypdf.errors import PyPdfError
from temporalio import activity

from switchboard.api.inference.v1 import inference_pb2, inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, pipelines_pb2
from switchboard.common.callmetadata import call_metadata
from switchboard.common.errors import InvalidArgument, SwitchboardError, from_rpc_error
from switchboard.common.jobref import JobRef

from ..shared.errors import DocumentEmpty, DocumentUnreadable
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
from ..stores.events import EventLog, job_event
from . import chunking
from .activities import enter_job
from .outage import application_error
from .vectors import VectorStore

log = logging.getLogger(__name__)

OCR_MODEL = "default-ocr"
# EmbedRequest takes up to 256 texts, but the inference service gives one Embed call 30 s: 32
# long chunks (one MiniLM batch in Triton) take a few seconds on a busy CPU, 256 can time out.
EMBED_BATCH = 32
INFERENCE_TIMEOUT_S = 120.0
# What pypdf raises on a malformed file besides its own errors.
_PDF_ERRORS = (PyPdfError, ValueError, TypeError, KeyError, IndexError, AttributeError,
               OSError, RecursionError, ZeroDivisionError)  # fmt: skip

Status = pipelines_pb2.StageResult.Status


class Documents:
    def __init__(
        self,
        inference: inference_pb2_grpc.InferenceServiceAsyncStub,
        events: EventLog,
        vectors: VectorStore,
    ) -> None:
        self._inference = inference
        self._events = events
        self._vectors = vectors

    @activity.defn(name=EXTRACT_DOCUMENT)
    async def extract_document(self, request: pipelines_pb2.IngestDocumentInput) -> Extracted:
        """The document's text: text as is, a PDF's pages' text, an image's through OCR."""
        ref = enter_job()
        try:
            tokens, overlap = chunk_sizes(request)
            if overlap >= tokens:  # checked first: before an OCR that would be wasted
                raise InvalidArgument("chunk_overlap must be smaller than chunk_tokens")
            document = request.document
            kind = document.WhichOneof("content")
            if kind == "pdf":
                text = await asyncio.to_thread(pdf_text, document.pdf)
            elif kind == "image":
                text = await self._ocr(document.image, ref.id)
            else:
                text = document.text
            if not text.strip():
                raise DocumentEmpty(f"the {kind} document holds no text")
        except SwitchboardError as e:
            raise application_error(e) from e
        log.info("document extracted", extra={"fields": {"kind": kind, "chars": len(text)}})
        return Extracted(text)

    @activity.defn(name=CHUNK_TEXT)
    async def chunk_text(self, task: ChunkTask) -> Chunked:
        enter_job()
        try:
            chunks = await asyncio.to_thread(
                chunking.chunk, task.text, task.chunk_tokens, task.chunk_overlap
            )
        except ValueError as e:
            raise application_error(InvalidArgument(str(e))) from e
        if not chunks:
            raise application_error(DocumentEmpty("the document's text holds no tokens"))
        return Chunked([c.text for c in chunks])

    @activity.defn(name=INDEX_CHUNKS)
    async def index_chunks(self, task: IndexTask) -> Indexed:
        """Embeds the chunks (batches of EMBED_BATCH) and replaces the document's chunks in
        the collection with them; logs the `embed` and `upsert` stages."""
        ref = enter_job()
        try:
            if not task.texts:
                raise DocumentEmpty("the document has no chunks to index")
            vectors, model = await self._embed(ref, task)
            await self._progress(ref, "upsert", Status.RUNNING)
            metadata: list[dict[str, str | int]] = [
                {**task.metadata, "document_id": task.document_id, "chunk_index": index,
                 "job": ref.name}
                for index in range(len(task.texts))
            ]  # fmt: skip
            vector_ids = await self._vectors.replace_document(
                ref.client,
                task.collection,
                task.document_id,
                model,
                list(zip(task.texts, vectors, metadata, strict=True)),
            )
            await self._progress(ref, "upsert", Status.SUCCEEDED, fraction=1.0)
        except SwitchboardError as e:
            raise application_error(e) from e
        fields = {"collection": task.collection, "chunks": len(vector_ids), "model": model}
        log.info("document indexed", extra={"fields": fields})
        return Indexed(vector_ids, model)

    @activity.defn(name=SEARCH_COLLECTION)
    async def search_collection(self, task: SearchTask) -> pipelines_pb2.SearchOutput:
        client_id = enter_job().client
        try:
            hits = await self._vectors.query(
                client_id, task.collection, task.model, task.vector, task.top_k
            )
        except SwitchboardError as e:
            raise application_error(e) from e
        return pipelines_pb2.SearchOutput(hits=hits, collection=task.collection)

    async def _ocr(self, image: bytes, job_id: str) -> str:
        request = inference_pb2.ExtractTextRequest(model=OCR_MODEL, image=image)
        try:
            reply = await self._inference.ExtractText(
                request,
                timeout=INFERENCE_TIMEOUT_S,
                metadata=call_metadata("", job_id=job_id),
            )
        except grpc.aio.AioRpcError as e:
            error = from_rpc_error(e)
            if error.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise DocumentUnreadable(f"OCR cannot read the image: {error.message}") from e
            raise error from e
        return reply.text

    async def _embed(self, ref: JobRef, task: IndexTask) -> tuple[list[list[float]], str]:
        """One vector per chunk, in order, and the model that served them."""
        vectors: list[list[float]] = []
        model = task.embed_model
        await self._progress(ref, "embed", Status.RUNNING)
        for at in range(0, len(task.texts), EMBED_BATCH):
            batch = task.texts[at : at + EMBED_BATCH]
            request = inference_pb2.EmbedRequest(model=task.embed_model, texts=batch)
            try:
                reply = await self._inference.Embed(
                    request,
                    timeout=INFERENCE_TIMEOUT_S,
                    metadata=call_metadata("", job_id=ref.id),
                )
            except grpc.aio.AioRpcError as e:
                raise from_rpc_error(e) from e
            vectors.extend(list(embedding.values) for embedding in reply.embeddings)
            model = reply.model or model
            activity.heartbeat(len(vectors))
            done = len(vectors) / len(task.texts)
            message = f"{len(vectors)} of {len(task.texts)} chunks"
            status = Status.SUCCEEDED if done >= 1 else Status.RUNNING
            await self._progress(ref, "embed", status, message, done)
        return vectors, model

    async def _progress(
        self,
        ref: JobRef,
        stage: str,
        status: Status.ValueType,
        message: str = "",
        fraction: float = 0.0,
    ) -> None:
        progress = events_pb2.Progress(
            stage=stage, status=status, message=message, fraction=fraction
        )
        await self._events.append(ref, job_event(ref, progress=progress))


def pdf_text(data: bytes) -> str:
    """The text of every page, pages separated by a blank line."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentUnreadable("the PDF is encrypted")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except _PDF_ERRORS as e:
        raise DocumentUnreadable(f"the PDF cannot be read: {e}") from e
    return "\n\n".join(page for page in pages if page)
