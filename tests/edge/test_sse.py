"""SSE from WatchJob against a real uvicorn and the stand-in planner (see conftest)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.errors import Unavailable
from switchboard.edge.server import EdgeServer
from switchboard.edge.sse import event_frame

from .conftest import WAIT_SECONDS, StandInPlanner, edge_client, job


def state_event(cursor: str, state: str) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        cursor=cursor, job="jobs/job-1", state_changed=events_pb2.StateChanged(state=state)
    )


def token_event(cursor: str, text: str, index: int) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        cursor=cursor, job="jobs/job-1", token=events_pb2.TokenDelta(text=text, index=index)
    )


HEARTBEAT_EVENT = events_pb2.JobEvent(job="jobs/job-1", heartbeat=events_pb2.Heartbeat())


def frames(text: str) -> list[str]:
    return [f for f in text.split("\n\n") if f]


def fields(frame: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in frame.split("\n") if not line.startswith(":"))


class Reader:
    """Reads an SSE response's text across several waits, each bounded in time."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_text()
        self.text = ""

    async def until(self, done: Callable[[str], bool]) -> str:
        """All text so far, once `done` holds for it or the stream has ended."""
        async with asyncio.timeout(WAIT_SECONDS):
            while not done(self.text):
                try:
                    self.text += await anext(self.chunks)
                except StopAsyncIteration:
                    break
        return self.text

    async def to_end(self) -> str:
        return await self.until(lambda _: False)


async def read_until(response: httpx.Response, done: Callable[[str], bool]) -> str:
    return await Reader(response).until(done)


@pytest.fixture
def watched(planner: StandInPlanner) -> StandInPlanner:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    planner.events = [
        state_event("1-0", "QUEUED"),
        state_event("2-0", "RUNNING"),
        token_event("3-0", "Hel", 0),
        token_event("4-0", "lo\n", 1),
        state_event("5-0", "SUCCEEDED"),
    ]
    return planner


@pytest.mark.asyncio
async def test_events_become_frames_with_id_event_and_data(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    async with client.stream("GET", "/v1/jobs/job-1/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-length" not in response.headers
        text = await Reader(response).to_end()  # the watch ends by itself
    assert frames(text)[0] == "retry: 2000"
    parsed = [fields(f) for f in frames(text)[1:]]
    assert [(f["id"], f["event"]) for f in parsed] == [
        ("1-0", "state_changed"),
        ("2-0", "state_changed"),
        ("3-0", "token"),
        ("4-0", "token"),
        ("5-0", "state_changed"),
    ]
    data = json.loads(parsed[3]["data"])
    assert data == {"cursor": "4-0", "job": "jobs/job-1", "token": {"text": "lo\n", "index": "1"}}
    assert watched.calls[0].request == jobs_pb2.WatchJobRequest(name="jobs/job-1")
    assert watched.calls[0].metadata["x-job-id"] == "job-1"


@pytest.mark.asyncio
async def test_last_event_id_resumes_after_that_cursor(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    headers = {"Last-Event-ID": "3-0"}
    async with client.stream("GET", "/v1/jobs/job-1/events?after=1-0", headers=headers) as resp:
        text = await Reader(resp).to_end()
    assert [fields(f)["id"] for f in frames(text)[1:]] == ["4-0", "5-0"]
    assert watched.calls[0].request == jobs_pb2.WatchJobRequest(
        name="jobs/job-1", after_cursor="3-0"
    )

    async with client.stream("GET", "/v1/jobs/job-1/events?after=4-0") as resp:
        text = await Reader(resp).to_end()
    assert [fields(f)["id"] for f in frames(text)[1:]] == ["5-0"]


@pytest.mark.asyncio
async def test_planner_heartbeat_becomes_a_comment_without_id(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    first, second = watched.events[:2]
    watched.events = [first, HEARTBEAT_EVENT, second]
    async with client.stream("GET", "/v1/jobs/job-1/events") as response:
        text = await Reader(response).to_end()
    between = frames(text)[2:-1]
    assert fields(frames(text)[1])["id"] == "1-0" and fields(frames(text)[-1])["id"] == "2-0"
    assert between and set(between) == {": heartbeat"}


@pytest.mark.asyncio
async def test_idle_stream_gets_heartbeat_comments(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    watched.events = watched.events[:1]
    watched.hold = True
    async with client.stream("GET", "/v1/jobs/job-1/events") as response:
        text = await read_until(response, lambda t: t.count(": heartbeat\n\n") >= 3)
    assert fields(frames(text)[1])["id"] == "1-0"
    assert set(frames(text)[2:]) == {": heartbeat"}


@pytest.mark.asyncio
async def test_error_mid_stream_is_an_error_event_then_the_end(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    watched.events = watched.events[:2]
    watched.watch_error = Unavailable("event log unreachable", reason="EVENT_LOG_UNAVAILABLE")
    async with client.stream("GET", "/v1/jobs/job-1/events") as response:
        assert response.status_code == 200
        text = await Reader(response).to_end()
    last = fields(frames(text)[-1])
    assert last["event"] == "error" and "id" not in last
    error = json.loads(last["data"])["error"]
    assert (error["code"], error["status"], error["message"]) == (
        503,
        "UNAVAILABLE",
        "event log unreachable",
    )
    assert error["details"][0]["reason"] == "EVENT_LOG_UNAVAILABLE"
    assert [fields(f).get("id") for f in frames(text)[1:-1]] == ["1-0", "2-0"]


@pytest.mark.asyncio
async def test_error_before_any_event_is_a_plain_http_error(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    response = await client.get("/v1/jobs/missing-1/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["details"][0]["reason"] == "JOB_NOT_FOUND"


@pytest.mark.asyncio
async def test_invalid_cursor_never_reaches_the_planner(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    response = await client.get("/v1/jobs/job-1/events", headers={"Last-Event-ID": "9" * 65})
    assert response.status_code == 400
    assert watched.calls == []


@pytest.mark.asyncio
async def test_head_does_not_open_a_watch(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    response = await client.head("/v1/jobs/job-1/events")
    assert (response.status_code, response.headers["allow"]) == (405, "GET")
    assert watched.calls == []


@pytest.mark.asyncio
async def test_client_disconnect_cancels_the_upstream_watch(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    watched.events = watched.events[:2]
    watched.hold = True
    async with client.stream("GET", "/v1/jobs/job-1/events") as response:
        await read_until(response, lambda t: "id: 2-0" in t)
        assert not watched.watch_cancelled.is_set()
    await asyncio.wait_for(watched.watch_cancelled.wait(), WAIT_SECONDS)


@pytest.mark.asyncio
async def test_draining_ends_open_streams(
    client: httpx.AsyncClient, watched: StandInPlanner, edge_server: EdgeServer
) -> None:
    watched.hold = True
    async with client.stream("GET", "/v1/jobs/job-1/events") as response:
        reader = Reader(response)
        await reader.until(lambda t: "id: 5-0" in t)
        assert not watched.watch_cancelled.is_set()
        edge_server.draining.set()
        await reader.to_end()
    await asyncio.wait_for(watched.watch_cancelled.wait(), WAIT_SECONDS)


def test_frame_format() -> None:
    event = state_event("7-1", "FAILED")
    assert event_frame(event) == (
        b'id: 7-1\nevent: state_changed\ndata: {"cursor":"7-1","job":"jobs/job-1",'
        b'"stateChanged":{"state":"FAILED"}}\n\n'
    )
    assert event_frame(HEARTBEAT_EVENT) == b": heartbeat\n\n"
    # A cursor cannot smuggle a second field into the frame.
    assert b"\nevent: x" not in event_frame(state_event("1\nevent: x", "RUNNING"))


@pytest.mark.asyncio
async def test_last_event_id_query_parameter_resumes_like_the_header(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    # For clients that cannot set headers; the header wins when both come.
    async with client.stream("GET", "/v1/jobs/job-1/events?lastEventId=3-0&after=1-0") as resp:
        text = await Reader(resp).to_end()
    assert [fields(f)["id"] for f in frames(text)[1:]] == ["4-0", "5-0"]
    headers = {"Last-Event-ID": "4-0"}
    async with client.stream("GET", "/v1/jobs/job-1/events?lastEventId=1-0", headers=headers) as r:
        text = await Reader(r).to_end()
    assert [fields(f)["id"] for f in frames(text)[1:]] == ["5-0"]


@pytest.mark.asyncio
async def test_resuming_after_the_end_is_204_so_eventsource_stops(
    client: httpx.AsyncClient, watched: StandInPlanner
) -> None:
    response = await client.get("/v1/jobs/job-1/events", headers={"Last-Event-ID": "5-0"})
    assert (response.status_code, response.content) == (204, b"")


@pytest.mark.asyncio
async def test_stream_ends_after_sse_max_seconds_without_cancelling_the_job(
    watched: StandInPlanner,
) -> None:
    watched.jobs["jobs/job-1"].labels["cancel-on-disconnect"] = "true"
    watched.events = watched.events[:4]  # still running
    watched.hold = True
    async with (
        edge_client(watched.address, sse_max_seconds=0.5) as http,
        http.stream("GET", "/v1/jobs/job-1/events") as response,
    ):
        started = asyncio.get_running_loop().time()
        text = await Reader(response).to_end()
        lasted = asyncio.get_running_loop().time() - started
    assert 0.3 < lasted < 5.0
    assert [fields(f).get("id") for f in frames(text)[1:5]] == ["1-0", "2-0", "3-0", "4-0"]
    await asyncio.wait_for(watched.watch_cancelled.wait(), WAIT_SECONDS)
    await asyncio.sleep(0.3)  # room for a CancelJob that must not come
    assert "CancelJob" not in watched.rpcs()
