"""proto3 JSON in and out: lowerCamelCase, stable bytes, strict parsing."""

from __future__ import annotations

import pytest

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.edge.codec import message_json, parse_body, parse_query
from switchboard.edge.errors import BodyNotUtf8, MalformedRequest


def test_output_is_lower_camel_case_and_stable() -> None:
    job = jobs_pb2.Job(name="jobs/a", state=jobs_pb2.Job.RUNNING, labels={"b": "2", "a": "1"})
    job.create_time.FromSeconds(0)
    assert message_json(job) == (
        b'{"createTime":"1970-01-01T00:00:00Z","labels":{"a":"1","b":"2"},'
        b'"name":"jobs/a","state":"RUNNING"}'
    )


def test_parsing_accepts_both_field_spellings() -> None:
    request = jobs_pb2.ListJobsRequest()
    parse_query([("page_size", "3"), ("pageToken", "t")], request)
    assert request == jobs_pb2.ListJobsRequest(page_size=3, page_token="t")
    job = jobs_pb2.Job()
    parse_body(b"  ", job)
    assert job == jobs_pb2.Job()
    parse_body('{"pipeline": "générer"}'.encode(), job)
    assert job.pipeline == "générer"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'"text"',
        b'{"state": "NOPE"}',
        b'{"labels": []}',
        b'{"state": 1e400}',
        b'{"state": ' + b"9" * 5000 + b"}",
        b'{"pipeline": NaN}',
    ],
)
def test_bad_bodies_are_malformed_requests(raw: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_body(raw, jobs_pb2.Job())


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"])
def test_a_body_in_another_json_encoding_is_not_utf8(encoding: str) -> None:
    with pytest.raises(BodyNotUtf8):
        parse_body('{"pipeline": "\u2200"}'.encode(encoding), jobs_pb2.Job())


def test_an_integer_query_parameter_is_bounded_before_conversion() -> None:
    for value in ["9" * 5000, "\xb2", "\u0663", "1e3", " 3"]:
        with pytest.raises(MalformedRequest, match="pageSize must be an integer"):
            parse_query([("pageSize", value)], jobs_pb2.ListJobsRequest())
