"""The OpenAPI document's bodies are typed: what the edge really writes validates against them.

Messages are built with the generated classes, written as the edge writes them (codec,
error_body, the SSE framing) and validated against the served document's components.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.edge import apidocs, codec, sse
from switchboard.edge.errors import error_body
from switchboard.edge.openai import bodies as openai_bodies
from switchboard.edge.openapi import document
from switchboard.edge.routes import job_routes

DOC: dict[str, Any] = document(job_routes())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]


def validator(name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:switchboard", Resource.from_contents(DOC, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:switchboard#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def packed(detail: Any) -> any_pb2.Any:
    value = any_pb2.Any()
    value.Pack(detail)
    return value


def test_every_reference_resolves_and_every_body_is_a_named_component() -> None:
    found = set(refs(DOC))
    assert {"#/components/schemas/Job", "#/components/schemas/Status"} <= found
    for ref in found:
        assert ref.removeprefix("#/components/schemas/") in SCHEMAS, ref
    ops = {op["operationId"]: op for item in DOC["paths"].values() for op in item.values()}
    assert ops["CreateJob"]["requestBody"]["required"] is True
    assert ops["CreateJob"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Job"
    }
    assert ops["CancelJob"]["requestBody"]["content"]["application/json"]["schema"] == {
        "type": "object",
        "properties": {},  # the path names the job
        "additionalProperties": False,
    }
    answers = {
        rpc: ops[rpc]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        for rpc in ("GetJob", "ListJobs", "GetJobResult", "ListPipelines", "GetChatSession")
    }
    assert answers["ListJobs"].endswith("/ListJobsResponse")
    assert answers["GetJobResult"].endswith("/JobResult")
    assert (
        SCHEMAS["Job"]["title"] == "Job"
        and "switchboard.jobs.v1.Job" in SCHEMAS["Job"]["description"]
    )


def test_a_job_as_the_edge_writes_it_matches_the_job_schema() -> None:
    job = jobs_pb2.Job(
        name="jobs/abc",
        state=jobs_pb2.Job.RUNNING,
        pipeline="generate",
        labels={"team": "search"},
    )
    job.input.generate.model = "tiny"
    job.input.generate.prompt = "Hello"
    job.create_time.GetCurrentTime()
    job.error.code = 9
    job.error.message = "failed"
    job.error.details.append(packed(error_details_pb2.ErrorInfo(reason="X", domain="d")))
    written = codec.to_dict(job)
    assert not list(validator("Job").iter_errors(written))
    # The document promises no more than that: bad values fail it.
    assert not validator("Job").is_valid({**written, "state": "NAPPING"})
    assert not validator("Job").is_valid({**written, "extra": 1})
    assert not validator("Job").is_valid({**written, "pipeline": "teleport"})
    both = {"generate": written["input"]["generate"], "embed": {"model": "m", "texts": ["a"]}}
    assert not validator("JobInput").is_valid(both)  # a oneof holds one member


def test_64_bit_integers_durations_and_the_redacted_document_follow_proto3_json() -> None:
    event = events_pb2.JobEvent(cursor="1-0", job="jobs/abc")
    event.token.text = "hi"
    event.token.index = 2**40
    written = codec.to_dict(event)
    assert written["token"]["index"] == str(2**40)
    assert validator("JobEvent").is_valid(written)
    retry = codec.to_dict(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2)))
    assert validator("RetryInfo").is_valid(
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", **retry}
    )
    # GetJob shows an ingest job's document empty (planner/redact.py).
    assert validator("Document").is_valid(codec.to_dict(pipelines_pb2.Document()))
    assert "kind" in SCHEMAS["JobInput"]["properties"]["generate"]["description"]


def test_the_error_body_and_its_details_match_the_error_schema() -> None:
    violation = error_details_pb2.BadRequest.FieldViolation(field="job.pipeline", description="x")
    error = SwitchboardError(
        "queue full",
        reason="QUEUE_FULL",
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        details=[
            packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1))),
            packed(error_details_pb2.BadRequest(field_violations=[violation])),
        ],
    )
    body = json.loads(codec.dumps(error_body(error)))
    assert not list(validator("Error").iter_errors(body))
    info, retry, bad = body["error"]["details"]
    assert validator("ErrorInfo").is_valid(info) and not validator("ErrorInfo").is_valid(retry)
    assert validator("RetryInfo").is_valid(retry) and validator("BadRequest").is_valid(bad)
    assert not validator("Error").is_valid({"error": {**body["error"], "status": "TEAPOT"}})


def test_the_event_stream_is_typed_frame_by_frame() -> None:
    content = DOC["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/event-stream"}
    assert content["text/event-stream"]["x-itemSchema"] == {
        "$ref": "#/components/schemas/JobEventFrame"
    }
    frame_schema = SCHEMAS["JobEventFrame"]
    assert frame_schema["properties"]["data"]["contentSchema"]["anyOf"][0] == {
        "$ref": "#/components/schemas/JobEvent"
    }
    event = events_pb2.JobEvent(cursor="7-0", job="jobs/abc")
    event.state_changed.state = "RUNNING"
    fields = dict(
        line.split(": ", 1) for line in sse.event_frame(event).decode().strip().splitlines()
    )
    assert validator("JobEventFrame").is_valid(fields)
    assert validator("JobEvent").is_valid(json.loads(fields["data"]))
    error_fields = sse.error_frame(SwitchboardError("gone")).decode().strip().splitlines()
    data = json.loads(error_fields[1].removeprefix("data: "))
    assert error_fields[0] == "event: error" and validator("Error").is_valid(data)


@pytest.mark.parametrize(
    ("value", "valid"), [("abc", True), ("a-1b", True), ("jobs/abc", False), ("ab", False)]
)
def test_path_and_query_parameters_carry_the_requests_rules(value: str, valid: bool) -> None:
    get = DOC["paths"]["/v1/jobs/{job_id}"]["get"]
    (job_id,) = get["parameters"][:1]
    assert Draft202012Validator(job_id["schema"]).is_valid(value) is valid
    listing = {p["name"]: p["schema"] for p in DOC["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert listing["pageSize"] == {"type": "integer", "minimum": 0, "maximum": 100}


def test_the_docs_page_links_every_typed_body_to_its_schema() -> None:
    page = apidocs.render(DOC)
    for name in ("Job", "ListJobsResponse", "JobResult", "JobEventFrame", "Error"):
        assert f"<a href='#schema-{name}'>{name}</a>" in page, name
        assert f"<h3 id='schema-{name}'>" in page, name
    assert "stateChanged" in page and "type.googleapis.com/google.rpc.ErrorInfo" in page


def test_the_job_schemas_and_the_openai_schemas_do_not_share_a_name() -> None:
    # Both land in one components/schemas; a shared name would let one replace the other.
    assert not set(SCHEMAS) & set(openai_bodies.SCHEMAS)
    assert {"InferenceUsage", "InferenceSamplingParams", "Status", "ErrorInfo"} <= set(SCHEMAS)
    usage = validator("InferenceUsage")
    assert usage.is_valid({"promptTokens": 3, "completionTokens": 6})
    assert not usage.is_valid({"prompt_tokens": 3})
