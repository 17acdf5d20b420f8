"""The document pipelines through the whole mesh: REST → planner → worker → inference (MiniLM,
PP-OCR, SmolLM2 on Triton) and Chroma, followed over SSE."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from switchboard.planner.work.vectors import collection_name

from ..chroma import chroma_client
from ..document_files import PARAGRAPH_CHUNK_TOKENS, PARAGRAPHS, VIOLINS, pdf, png, three_topics
from ..document_files import words as words_of
from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CLIENT_ID = "dev"  # the client of the development API key
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def _create(client: httpx.Client, pipeline: str, job_input: dict[str, Any]) -> str:
    body = {"pipeline": pipeline, "input": {pipeline.replace("-", "_"): job_input}}
    reply = client.post("/v1/jobs", json=body, headers=AUTH)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["name"]).removeprefix("jobs/")


def _finish(client: httpx.Client, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Follows the job's events to their end; the job as GET shows it then."""
    events = []
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=AUTH) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if sse.data:
                events.append({"event": sse.event, "data": json.loads(sse.data)})
    # GET shows the end a moment after its event is logged (docs/planner.md).
    deadline = time.monotonic() + 30
    while (job := client.get(f"/v1/jobs/{job_id}", headers=AUTH).json())["state"] not in TERMINAL:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job, events


def _ingest(client: httpx.Client, collection: str, document: dict[str, str], **extra: Any) -> str:
    return _create(
        client, "ingest-document", {"collection": collection, "document": document, **extra}
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stages(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["progress"]["stage"] for e in events if e["event"] == "progress"]


async def _stored_ids(mesh: Mesh, collection: str) -> list[str]:
    async with chroma_client(mesh.ports.chroma) as client:
        target = await client.get_collection(
            collection_name(CLIENT_ID, collection), embedding_function=None
        )
        ids = sorted((await target.get(include=[]))["ids"])
        await client.delete_collection(target.name)  # nothing of the test stays in Chroma
    return ids


def test_documents_are_ingested_searched_and_answered(mesh: Mesh) -> None:
    collection = f"e2e-{uuid.uuid4().hex[:8]}"
    scan_lines = ["Switchboard reads scanned pages", "Violins have four strings"]
    with httpx.Client(base_url=mesh.public, timeout=120) as client:
        jobs = [
            _ingest(client, collection, {"text": three_topics()}, documentId="guide",
                    chunkTokens=PARAGRAPH_CHUNK_TOKENS, chunkOverlap=0),
            _ingest(client, collection, {"pdf": _b64(pdf(PARAGRAPHS))}, documentId="report"),
            _ingest(client, collection, {"image": _b64(png(scan_lines))}, documentId="scan"),
        ]  # fmt: skip
        ingested = [_finish(client, job_id) for job_id in jobs]
        for job, events in ingested:
            assert job["state"] == "SUCCEEDED", job.get("error")
            assert _stages(events)[::2] == ["extract", "chunk", "embed", "upsert"]
        (guide, _), (report, _), (scan, _) = ingested
        assert guide["result"]["ingestDocument"]["vectorIds"] == ["guide:0", "guide:1", "guide:2"]
        assert report["result"]["ingestDocument"]["vectorIds"] == ["report:0"]
        scanned = scan["result"]["ingestDocument"]["extractedText"]
        assert words_of(scanned) == words_of(" ".join(scan_lines))

        search, events = _finish(
            client, _create(client, "search", {"collection": collection, "query": "violin bow"})
        )
        assert search["state"] == "SUCCEEDED", search.get("error")
        hits = search["result"]["search"]["hits"]
        assert hits[0]["id"] == "guide:1"
        assert hits[0]["text"] == VIOLINS
        assert _stages(events) == ["embed-query"] * 2 + ["search"] * 2

        question = {"collection": collection, "question": "How many strings has a violin?",
                    "topK": 3, "params": {"maxTokens": 32, "temperature": 0}}  # fmt: skip
        answer, events = _finish(client, _create(client, "answer", question))
        assert answer["state"] == "SUCCEEDED", answer.get("error")
        output = answer["result"]["answer"]
        assert output["text"].strip()
        assert [c["number"] for c in output["citations"]] == [1, 2, 3]
        assert output["citations"][0]["chunk"]["id"] == "guide:1"
        for citation in output["citations"]:
            assert citation.get("cited", False) == (f"[{citation['number']}]" in output["text"])
        tokens = "".join(e["data"]["token"]["text"] for e in events if e["event"] == "token")
        assert tokens == output["text"]

    ids = asyncio.run(_stored_ids(mesh, collection))
    assert ids == [
        "guide:0",
        "guide:1",
        "guide:2",
        "report:0",
        *scan["result"]["ingestDocument"]["vectorIds"],
    ]


def test_unreadable_documents_and_missing_collections_fail_with_reasons(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.public, timeout=120) as client:
        broken = _ingest(client, "e2e-broken", {"pdf": _b64(b"%PDF-1.7\nnot really")})
        missing = _create(
            client, "search", {"collection": f"none-{uuid.uuid4().hex[:8]}", "query": "x"}
        )
        for job_id, reason in ((broken, "DOCUMENT_UNREADABLE"), (missing, "COLLECTION_NOT_FOUND")):
            job, _ = _finish(client, job_id)
            assert job["state"] == "FAILED"
            assert job["error"]["details"][0]["reason"] == reason


def test_get_and_list_leave_the_document_out(mesh: Mesh) -> None:
    content = _b64(pdf(PARAGRAPHS))
    with httpx.Client(base_url=mesh.public, timeout=120) as client:
        job_id = _ingest(client, f"e2e-{uuid.uuid4().hex[:8]}", {"pdf": content})
        job, _ = _finish(client, job_id)
        listed = client.get("/v1/jobs", headers=AUTH, params={"pageSize": 50}).json()["jobs"]

    (shown,) = [j for j in listed if j["name"] == job["name"]]
    for seen in (job, shown):
        assert "pdf" not in seen["input"]["ingestDocument"].get("document", {})
        assert content not in json.dumps(seen)
    assert job["result"]["ingestDocument"]["vectorIds"]
