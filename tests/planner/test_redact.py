"""The stored view of a job: an ingest job's document content is left out, nothing else."""

from __future__ import annotations

import pytest

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.planner.shared.redact import stored_view


@pytest.mark.parametrize(
    "document",
    [
        pipelines_pb2.Document(text="a" * 1000),
        pipelines_pb2.Document(pdf=b"%PDF" + b"x" * 1000),
        pipelines_pb2.Document(image=b"\x89PNG" + b"y" * 1000),
    ],
)
def test_the_document_content_is_cleared_and_the_rest_kept(
    document: pipelines_pb2.Document,
) -> None:
    ingest = pipelines_pb2.IngestDocumentInput(
        collection="docs", document=document, document_id="d1", metadata={"k": "v"}
    )
    job = jobs_pb2.Job(
        name="jobs/j-1",
        pipeline="ingest-document",
        input=pipelines_pb2.JobInput(ingest_document=ingest),
        labels={"team": "a"},
    )
    original = job.SerializeToString()

    view = stored_view(job)

    shown = view.input.ingest_document
    assert shown.HasField("document")
    assert shown.document.WhichOneof("content") is None
    assert (shown.collection, shown.document_id, dict(shown.metadata)) == ("docs", "d1", {"k": "v"})
    assert (view.name, view.pipeline, dict(view.labels)) == (
        "jobs/j-1",
        "ingest-document",
        {"team": "a"},
    )
    assert len(view.SerializeToString()) < 100
    assert job.SerializeToString() == original, "the job itself keeps its document"


def test_other_jobs_are_shown_as_they_are() -> None:
    job = jobs_pb2.Job(
        name="jobs/j-2",
        pipeline="generate",
        input=pipelines_pb2.JobInput(
            generate=pipelines_pb2.GenerateInput(model="m", prompt="p" * 1000)
        ),
    )

    assert stored_view(job) == job
