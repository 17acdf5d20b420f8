"""CreateJob's pipeline checks that protovalidate cannot express (they need the defaults)."""

from __future__ import annotations

import grpc
import pytest

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.planner.api.servicer import check_pipeline


def ingest(tokens: int, overlap: int | None) -> jobs_pb2.Job:
    document = pipelines_pb2.IngestDocumentInput(
        collection="notes", document=pipelines_pb2.Document(text="hello"), chunk_tokens=tokens
    )
    if overlap is not None:
        document.chunk_overlap = overlap
    job_input = pipelines_pb2.JobInput(ingest_document=document)
    return jobs_pb2.Job(pipeline="ingest-document", input=job_input)


@pytest.mark.parametrize(
    ("tokens", "overlap"),
    [(8, None), (8, 8), (0, 500)],  # the default overlap (50) against 8; the default size (500)
    ids=["default-overlap", "equal", "default-size"],
)
def test_an_overlap_not_below_the_chunk_size_is_refused_at_create(
    tokens: int, overlap: int | None
) -> None:
    with pytest.raises(SwitchboardError) as caught:
        check_pipeline(ingest(tokens, overlap))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.metadata == {"field": "chunk_overlap"}


@pytest.mark.parametrize(("tokens", "overlap"), [(8, 0), (8, 7), (0, 499), (100, None)])
def test_an_overlap_below_the_chunk_size_passes(tokens: int, overlap: int | None) -> None:
    check_pipeline(ingest(tokens, overlap))
