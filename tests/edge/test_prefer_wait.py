"""POST /v1/jobs with `Prefer: wait=N` and `Idempotency-Key`, against the live stand-in
planner of test_hub (its WatchJob streams a log the test appends to)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.edge.wait import preferred_wait

from .conftest import edge_client
from .test_handlers import GENERATE, error_reason
from .test_hub import JOB, LivePlanner, eventually, serving, state, token


@pytest_asyncio.fixture
async def live() -> AsyncIterator[LivePlanner]:
    async with serving(LivePlanner()) as servicer:
        yield servicer


@pytest_asyncio.fixture
async def live_client(live: LivePlanner) -> AsyncIterator[httpx.AsyncClient]:
    async with edge_client(live.address) as http:
        yield http


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        (["wait=5"], 5),
        (["respond-async, wait=3"], 3),
        (['WAIT="7"; foo=bar'], 7),
        (["handling=lenient", "wait=2, wait=9"], 2),  # the first instance counts
        (["wait=600"], 10),  # capped
        (["wait=0"], None),
        (["wait=-1"], None),
        (["wait=1.5"], None),
        (["wait"], None),
        (["respond-async"], None),
        ([], None),
    ],
)
def test_preferred_wait(headers: list[str], seconds: int | None) -> None:
    assert preferred_wait(headers, 10.0) == seconds


async def _finish_when_followed(live: LivePlanner) -> None:
    """Ends the job once the edge follows it: the planner first records SUCCEEDED (as the
    real one updates its snapshot before logging the terminal event), then logs it."""
    await eventually(lambda: live.open_watches == 1, "the edge follows the job")
    live.append(state(1, "RUNNING"), token(2))
    await asyncio.sleep(0.2)
    live.jobs[JOB].state = jobs_pb2.Job.SUCCEEDED
    live.append(state(3, "SUCCEEDED"))


@pytest.mark.asyncio
async def test_wait_answers_200_with_the_job_once_it_ends(
    live: LivePlanner, live_client: httpx.AsyncClient
) -> None:
    finisher = asyncio.ensure_future(_finish_when_followed(live))
    response = await live_client.post("/v1/jobs", json=GENERATE, headers={"Prefer": "wait=8"})
    await finisher
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "SUCCEEDED"
    assert response.headers["preference-applied"] == "wait=8"
    assert response.headers["location"] == "/v1/jobs/job-1"
    assert "retry-after" not in response.headers
    assert live.gets == [JOB]  # read once, after the terminal event
    await eventually(lambda: live.open_watches == 0, "the watch is closed")


@pytest.mark.asyncio
async def test_a_logged_success_with_its_result_is_answered_without_reading_the_job(
    live: LivePlanner, live_client: httpx.AsyncClient
) -> None:
    """The planner logs the result just before SUCCEEDED: the edge answers from the job as
    created and those two events (common.jobview), with no GetJob after the end."""
    result = events_pb2.JobEvent(
        cursor="3-0",
        job=JOB,
        result=pipelines_pb2.JobResult(generate=pipelines_pb2.GenerateOutput(text="t2 done")),
    )
    end = state(4, "SUCCEEDED")
    end.create_time.FromSeconds(1_800_000_000)

    async def finish() -> None:
        await eventually(lambda: live.open_watches == 1, "the edge follows the job")
        live.append(state(1, "RUNNING"), token(2), result, end)

    finisher = asyncio.ensure_future(finish())
    response = await live_client.post("/v1/jobs", json=GENERATE, headers={"Prefer": "wait=8"})
    await finisher

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["result"]["generate"]["text"]) == ("SUCCEEDED", "t2 done")
    assert body["updateTime"] == "2027-01-15T08:00:00Z"  # the SUCCEEDED event's time
    assert body["labels"] == GENERATE["labels"]  # the rest as created
    assert live.gets == []


@pytest.mark.asyncio
async def test_wait_that_runs_out_answers_202_as_without_it(
    live: LivePlanner, live_client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    response = await live_client.post("/v1/jobs", json=GENERATE, headers={"Prefer": "wait=1"})
    assert 1.0 <= time.monotonic() - started < 5.0
    assert response.status_code == 202
    assert response.json()["state"] == "QUEUED"
    assert response.headers["preference-applied"] == "wait=1"
    assert (response.headers["retry-after"], response.headers["location"]) == (
        "1",
        "/v1/jobs/job-1",
    )
    assert live.gets == []
    await eventually(lambda: live.cancelled_watches == 1, "the watch is cancelled")


@pytest.mark.asyncio
async def test_wait_is_capped_by_the_setting(live: LivePlanner) -> None:
    async with edge_client(live.address, max_wait_seconds=1.0) as http:
        started = time.monotonic()
        response = await http.post("/v1/jobs", json=GENERATE, headers={"Prefer": "wait=100"})
    assert time.monotonic() - started < 5.0
    assert (response.status_code, response.headers["preference-applied"]) == (202, "wait=1")


@pytest.mark.asyncio
@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-3", "respond-async"])
async def test_a_preference_without_a_valid_wait_is_ignored(
    live: LivePlanner, live_client: httpx.AsyncClient, prefer: str
) -> None:
    response = await live_client.post("/v1/jobs", json=GENERATE, headers={"Prefer": prefer})
    assert response.status_code == 202
    assert "preference-applied" not in response.headers
    assert live.watch_calls == []


@pytest.mark.asyncio
async def test_idempotency_key_repeats_return_the_same_job(
    live: LivePlanner, live_client: httpx.AsyncClient
) -> None:
    key = {"Idempotency-Key": "order-7f3a"}
    first = await live_client.post("/v1/jobs", json=GENERATE, headers=key)
    # The IETF draft quotes the key (a structured-field string); both forms name one key.
    again = await live_client.post(
        "/v1/jobs", json=GENERATE, headers={"Idempotency-Key": '"order-7f3a"'}
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["name"] == again.json()["name"] != JOB
    assert [c.idempotency_key for c in live.creates] == ["order-7f3a", "order-7f3a"]

    live.jobs[first.json()["name"]].state = jobs_pb2.Job.SUCCEEDED
    done = await live_client.post("/v1/jobs", json=GENERATE, headers={**key, "Prefer": "wait=5"})
    assert (done.status_code, done.json()["state"]) == (200, "SUCCEEDED")
    assert live.watch_calls == []  # already over: nothing to wait for

    other = {**GENERATE, "labels": {"team": "another"}}
    reused = await live_client.post("/v1/jobs", json=other, headers=key)
    assert reused.status_code == 422
    assert error_reason(reused) == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["has space", "x" * 256])
async def test_invalid_idempotency_key_is_400(
    live: LivePlanner, live_client: httpx.AsyncClient, key: str
) -> None:
    response = await live_client.post("/v1/jobs", json=GENERATE, headers={"Idempotency-Key": key})
    assert (response.status_code, error_reason(response)) == (400, "VALIDATION_FAILED")
    assert live.creates == []
