"""REST endpoints against a real uvicorn and the stand-in planner (see conftest)."""

from __future__ import annotations

import httpx
import pytest

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2

from .conftest import CLIENT, StandInPlanner, job

GENERATE = {
    "pipeline": "generate",
    "input": {"generate": {"model": "test-streamer", "prompt": "Hello"}},
    "labels": {"team": "edge"},
}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def error_reason(response: httpx.Response) -> str:
    details = response.json()["error"]["details"]
    infos = [d for d in details if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert infos, details
    return str(infos[0]["reason"])


@pytest.mark.asyncio
async def test_create_answers_202_with_location_and_forwards_identity_and_trace(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    response = await client.post(
        "/v1/jobs", params={"job_id": "job-1"}, json=GENERATE, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/jobs/job-1"
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert (body["name"], body["state"], body["labels"]) == (
        "jobs/job-1",
        "QUEUED",
        {"team": "edge"},
    )
    assert body["input"]["generate"]["prompt"] == "Hello"  # lowerCamelCase proto3 JSON
    [call] = planner.calls
    assert call.request == jobs_pb2.CreateJobRequest(
        job_id="job-1",
        job=jobs_pb2.Job(
            pipeline="generate",
            input=pipelines_pb2.JobInput(
                generate=pipelines_pb2.GenerateInput(model="test-streamer", prompt="Hello")
            ),
            labels={"team": "edge"},
        ),
    )
    assert call.metadata["x-client-id"] == CLIENT
    assert "x-job-id" not in call.metadata  # only a path names a job
    version, trace_id, span_id, _ = call.metadata["traceparent"].split("-")
    # The same trace, continued from the edge's own span.
    assert (version, trace_id) == ("00", TRACE_ID)
    assert span_id != TRACEPARENT.split("-")[2]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body",
    [
        {**GENERATE, "pipeline": "translate"},
        {"pipeline": "generate"},
        {**GENERATE, "input": {"generate": {"model": "m", "prompt": ""}}},
        {**GENERATE, "labels": {"Bad Key": "x"}},
    ],
)
async def test_invalid_body_is_400_and_never_reaches_the_planner(
    client: httpx.AsyncClient, planner: StandInPlanner, body: dict[str, object]
) -> None:
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert error_reason(response) == "VALIDATION_FAILED"
    violations = [d for d in response.json()["error"]["details"] if "fieldViolations" in d]
    assert violations and violations[0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert planner.calls == []


@pytest.mark.asyncio
async def test_invalid_job_id_query_and_unknown_field_are_400(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    bad_id = await client.post("/v1/jobs", params={"job_id": "UPPER"}, json=GENERATE)
    assert (bad_id.status_code, error_reason(bad_id)) == (400, "VALIDATION_FAILED")
    unknown = await client.post("/v1/jobs", json={**GENERATE, "colour": "red"})
    assert (unknown.status_code, error_reason(unknown)) == (400, "MALFORMED_REQUEST")
    bad_path = await client.get("/v1/jobs/NOT_A_VALID_ID")
    assert (bad_path.status_code, error_reason(bad_path)) == (400, "VALIDATION_FAILED")
    assert planner.calls == []


@pytest.mark.asyncio
async def test_get_missing_job_is_404_with_the_planner_reason(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    response = await client.get("/v1/jobs/nope-123")
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["status"], error["message"]) == (
        404,
        "NOT_FOUND",
        "jobs/nope-123 does not exist",
    )
    assert error["details"][0]["domain"] == "switchboard.dev"
    assert error_reason(response) == "JOB_NOT_FOUND"
    assert planner.calls[0].metadata["x-job-id"] == "nope-123"


@pytest.mark.asyncio
async def test_get_etag_and_conditional_304(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    first = await client.get("/v1/jobs/job-1")
    assert first.status_code == 200
    assert first.json()["state"] == "RUNNING"
    assert first.headers["retry-after"] == "1"
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    again = await client.get("/v1/jobs/job-1")
    assert again.headers["etag"] == etag  # same job, same bytes, same tag

    unchanged = await client.get("/v1/jobs/job-1", headers={"If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert unchanged.headers["etag"] == etag
    weak = await client.get("/v1/jobs/job-1", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304

    planner.jobs["jobs/job-1"].state = jobs_pb2.Job.SUCCEEDED
    changed = await client.get("/v1/jobs/job-1", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert "retry-after" not in changed.headers  # finished: nothing to poll for
    assert all(c.metadata["x-job-id"] == "job-1" for c in planner.calls)


@pytest.mark.asyncio
async def test_list_passes_paging_query(client: httpx.AsyncClient, planner: StandInPlanner) -> None:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.QUEUED)
    response = await client.get("/v1/jobs", params={"page_size": "5", "pageToken": "abc"})
    assert response.status_code == 200
    assert response.json()["nextPageToken"] == "p2"
    assert [j["name"] for j in response.json()["jobs"]] == ["jobs/job-1"]
    assert planner.calls[0].request == jobs_pb2.ListJobsRequest(page_size=5, page_token="abc")
    too_big = await client.get("/v1/jobs", params={"page_size": "1000"})
    assert (too_big.status_code, error_reason(too_big)) == (400, "VALIDATION_FAILED")


@pytest.mark.asyncio
async def test_cancel_answers_202_with_the_job(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    response = await client.post("/v1/jobs/job-1/cancel")
    assert response.status_code == 202
    assert response.json()["state"] == "CANCELLING"
    assert planner.calls[0].request == jobs_pb2.CancelJobRequest(name="jobs/job-1")


@pytest.mark.asyncio
async def test_result_is_409_with_retry_after_until_finished(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    running = await client.get("/v1/jobs/job-1/result")
    assert running.status_code == 409
    assert running.headers["retry-after"] == "1"
    assert running.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert error_reason(running) == "JOB_NOT_FINISHED"

    planner.results["jobs/job-1"] = pipelines_pb2.JobResult(
        generate=pipelines_pb2.GenerateOutput(text="Hello world")
    )
    done = await client.get("/v1/jobs/job-1/result")
    assert done.status_code == 200
    assert done.json() == {"generate": {"text": "Hello world"}}


@pytest.mark.asyncio
async def test_new_annotated_rpcs_are_routes_with_no_edge_code(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    """ListPipelines and GetChatSession were added to the proto only; the edge serves them."""
    pipelines = await client.get("/v1/pipelines")
    assert pipelines.status_code == 200
    assert pipelines.json()["pipelines"][0]["name"] == "generate"
    session = await client.get("/v1/sessions/s-1")
    assert session.status_code == 200
    assert session.json() == {
        "name": "sessions/s-1",
        "turns": [{"role": "user", "content": "hello", "job": "jobs/chat-1"}],
    }
    assert [c.rpc for c in planner.calls] == ["ListPipelines", "GetChatSession"]
    bad = await client.get("/v1/sessions/bad%20id")
    assert (bad.status_code, error_reason(bad)) == (400, "VALIDATION_FAILED")
