from __future__ import annotations

import pytest
from google.rpc import error_details_pb2

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.errors import InvalidArgument
from switchboard.common.validation import validate


def test_valid_request_passes() -> None:
    job = jobs_pb2.Job(
        pipeline="generate",
        input=pipelines_pb2.JobInput(
            generate=pipelines_pb2.GenerateInput(model="test-streamer", prompt="hi")
        ),
    )
    validate(jobs_pb2.CreateJobRequest(job=job))


def test_violations_become_bad_request_details() -> None:
    job = jobs_pb2.Job(pipeline="nope", labels={"BAD": "x"})
    with pytest.raises(InvalidArgument) as caught:
        validate(jobs_pb2.CreateJobRequest(job=job))
    err = caught.value
    assert err.reason == "VALIDATION_FAILED"
    bad = error_details_pb2.BadRequest()
    assert err.details[0].Unpack(bad)
    fields = {v.field: v.reason for v in bad.field_violations}
    assert fields["job.pipeline"] == "string.in"
    assert fields["job.input"] == "required"
    assert "job.labels['BAD']" in fields
