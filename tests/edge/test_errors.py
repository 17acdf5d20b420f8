"""One error translation: gRPC status -> HTTP status + the Google error body."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.protobuf import any_pb2

from switchboard.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from switchboard.common.errors import SwitchboardError
from switchboard.edge.errors import (
    HTTP_STATUS,
    MethodNotAllowed,
    error_body,
    error_response,
    http_status,
    upstream_error,
)

from .conftest import StandInPlanner

STANDARD = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def test_standard_table_covers_every_code() -> None:
    assert {code.name: status for code, status in HTTP_STATUS.items()} == STANDARD


@pytest.mark.parametrize("code", list(grpc.StatusCode))
def test_each_code_answers_its_status(code: grpc.StatusCode) -> None:
    error = SwitchboardError("boom", reason="SOME_REASON", code=code)
    assert http_status(error)[0] == STANDARD[code.name]
    assert error_response(error).status_code == STANDARD[code.name]


def test_reason_overrides_are_few_and_explicit() -> None:
    not_finished = SwitchboardError(
        "running", reason="JOB_NOT_FINISHED", code=grpc.StatusCode.FAILED_PRECONDITION
    )
    assert http_status(not_finished) == (409, {"Retry-After": "1"})
    other = SwitchboardError("x", reason="OTHER", code=grpc.StatusCode.FAILED_PRECONDITION)
    assert http_status(other) == (400, {})
    assert http_status(MethodNotAllowed("no"))[0] == 405


def test_body_is_the_google_error_shape() -> None:
    unknown = any_pb2.Any(type_url="type.googleapis.com/acme.Unknown", value=b"\x08\x01")
    error = SwitchboardError(
        "no such job",
        reason="JOB_NOT_FOUND",
        code=grpc.StatusCode.NOT_FOUND,
        metadata={"job": "jobs/x"},
        details=[unknown],
    )
    assert error_body(error) == {
        "error": {
            "code": 404,
            "status": "NOT_FOUND",
            "message": "no such job",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "JOB_NOT_FOUND",
                    "domain": "switchboard.dev",
                    "metadata": {"job": "jobs/x"},
                },
                {"@type": "type.googleapis.com/acme.Unknown"},
            ],
        }
    }


@pytest.mark.asyncio
async def test_upstream_error_keeps_the_planner_reason(planner: StandInPlanner) -> None:
    """A real failed aio call (not a grpc.Call) still yields the rich status."""
    async with grpc.aio.insecure_channel(planner.address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            await stub.GetJob(jobs_pb2.GetJobRequest(name="jobs/nope-1"))
    error = upstream_error(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    assert error.message == "jobs/nope-1 does not exist"


@pytest.mark.asyncio
async def test_unknown_path_and_wrong_verb_use_the_same_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["details"][0]["reason"] == "ROUTE_NOT_FOUND"
    wrong = await client.delete("/v1/jobs")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    error = wrong.json()["error"]
    assert (error["code"], error["details"][0]["reason"]) == (405, "METHOD_NOT_ALLOWED")


@pytest.mark.asyncio
async def test_planner_bug_is_a_generic_500(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    planner.crash = True
    response = await client.get("/v1/jobs/job-1")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["status"] == "INTERNAL"
    assert "secret" not in response.text
