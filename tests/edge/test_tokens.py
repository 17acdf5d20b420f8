"""Stream tokens (`?token=` opens one job's event stream, for EventSource) and CORS."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.settings import Secret
from switchboard.edge.errors import StreamTokenInvalid
from switchboard.edge.tokens import StreamTokens

from .conftest import CLIENT, WAIT_SECONDS, StandInPlanner, edge_client, job, settings_for
from .test_handlers import GENERATE, error_reason
from .test_sse import Reader, fields, frames, state_event

JOB = "jobs/job-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_opens_its_job_for_its_client_until_it_expires() -> None:
    clock = Clock()
    tokens = StreamTokens(b"k" * 32, ttl=60, clock=clock)
    token = tokens.issue("team-a", JOB)
    assert tokens.verify(token, JOB) == "team-a"
    with pytest.raises(StreamTokenInvalid, match="not valid for this job"):
        tokens.verify(token, "jobs/job-2")
    clock.now += 61
    with pytest.raises(StreamTokenInvalid, match="expired"):
        tokens.verify(token, JOB)


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: t.replace(t.split(".")[1], "b3RoZXI", 1),  # another client, same mac
        lambda t: str(int(t.split(".")[0]) + 3600) + t[t.index(".") :],  # a later expiry
        lambda t: t[:-2],
        lambda t: "",
        lambda t: "....",
        lambda t: "12.!!.??",
    ],
)
def test_forged_or_malformed_tokens_are_refused(forge: Callable[[str], str]) -> None:
    tokens = StreamTokens(b"k" * 32)
    token = tokens.issue("team-a", JOB)
    with pytest.raises(StreamTokenInvalid):
        tokens.verify(forge(token), JOB)


def test_replicas_sharing_the_keys_verify_each_others_tokens() -> None:
    settings = settings_for("127.0.0.1:1")
    one, two = StreamTokens.from_settings(settings), StreamTokens.from_settings(settings)
    assert two.verify(one.issue(CLIENT, JOB), JOB) == CLIENT
    other_keys = dataclasses.replace(settings, api_keys=Secret("k2=c2"))
    with pytest.raises(StreamTokenInvalid):
        StreamTokens.from_settings(other_keys).verify(one.issue(CLIENT, JOB), JOB)
    secret = dataclasses.replace(settings, stream_token_secret=Secret("s3cr3t"))
    assert (
        StreamTokens.from_settings(secret).verify(StreamTokens(b"s3cr3t").issue(CLIENT, JOB), JOB)
        == CLIENT
    )


@pytest.mark.asyncio
async def test_create_links_an_event_stream_that_opens_without_a_key(
    client: httpx.AsyncClient, planner: StandInPlanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await client.post("/v1/jobs", params={"job_id": "job-1"}, json=GENERATE)
    link = created.headers["link"]
    assert link.startswith("</v1/jobs/job-1/events?token=") and link.endswith('>; rel="events"')
    url = link[1 : link.index(">")]
    token = parse_qs(urlsplit(url).query)["token"][0]
    planner.jobs[JOB].state = jobs_pb2.Job.RUNNING
    planner.events = [state_event("1-0", "RUNNING"), state_event("2-0", "SUCCEEDED")]

    async with (
        httpx.AsyncClient(base_url=client.base_url, timeout=WAIT_SECONDS) as browser,
        browser.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        text = await Reader(response).until(lambda t: "id: 2-0" in t)
    assert [fields(f)["id"] for f in frames(text)[1:3]] == ["1-0", "2-0"]
    watch = [c for c in planner.calls if c.rpc == "WatchJob"]
    assert watch[0].metadata["x-client-id"] == CLIENT
    assert watch[0].request == jobs_pb2.WatchJobRequest(name=JOB)
    # The edge's own lines (uvicorn's access log is off in the edge; the e2e test reads the
    # real edge's log file for the same).
    edge_lines = [r for r in caplog.records if r.name.startswith("switchboard.")]
    assert edge_lines
    assert all(token not in r.getMessage() + str(r.__dict__) for r in edge_lines)


@pytest.mark.asyncio
async def test_a_token_opens_nothing_else(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    planner.jobs["jobs/job-2"] = job("job-2", jobs_pb2.Job.RUNNING)
    created = await client.post("/v1/jobs", params={"job_id": "job-1"}, json=GENERATE)
    token = parse_qs(urlsplit(created.headers["link"][1:].split(">")[0]).query)["token"][0]
    async with httpx.AsyncClient(base_url=client.base_url, timeout=WAIT_SECONDS) as browser:
        other_job = await browser.get("/v1/jobs/job-2/events", params={"token": token})
        other_route = await browser.get("/v1/jobs/job-1", params={"token": token})
        garbage = await browser.get("/v1/jobs/job-1/events", params={"token": "1.2.3"})
    assert (other_job.status_code, error_reason(other_job)) == (401, "UNAUTHENTICATED")
    assert (other_route.status_code, error_reason(other_route)) == (401, "API_KEY_INVALID")
    assert (garbage.status_code, error_reason(garbage)) == (401, "UNAUTHENTICATED")
    assert [c.rpc for c in planner.calls] == ["CreateJob"]


@pytest.mark.asyncio
async def test_cors_answers_only_the_configured_origins(planner: StandInPlanner) -> None:
    planner.jobs[JOB] = job("job-1", jobs_pb2.Job.RUNNING)
    page = "http://page.test:8000"
    preflight = {
        "Origin": page,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id",
    }
    async with edge_client(planner.address, cors_origins=(page,)) as http:
        allowed = await http.options("/v1/jobs/job-1/events", headers=preflight)
        read = await http.get("/v1/jobs/job-1", headers={"Origin": page})
        stranger = await http.get("/v1/jobs/job-1", headers={"Origin": "http://evil.test"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == page
    assert "last-event-id" in allowed.headers["access-control-allow-headers"].lower()
    assert read.headers["access-control-allow-origin"] == page
    assert "etag" in read.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in stranger.headers
    async with edge_client(planner.address) as http:
        off = await http.get("/v1/jobs/job-1", headers={"Origin": page})
    assert off.status_code == 200 and "access-control-allow-origin" not in off.headers
