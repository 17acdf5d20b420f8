"""The per-client cap on open streams: SSE job streams and chat sockets of one client count
together over both replicas (real Valkey, two edge processes); beyond the cap 429
TOO_MANY_STREAMS with Retry-After; a stream that ends frees its slot; a killed edge's slots
expire with their lease; without Valkey streams open unchecked (fail open)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from switchboard.api.jobs.v1 import jobs_pb2

from .conftest import WAIT_SECONDS, StandInPlanner, edge_client, job
from .processes import EdgeProcess, edges

CAP = 2
# Long enough to outlast a slow start on a busy machine; the kill test waits it out.
LEASE_SECONDS = 2.0


def _env(planner: StandInPlanner, valkey_url: str, keys: str) -> dict[str, str]:
    return {
        "SWITCHBOARD_EDGE_PLANNER_ADDRESS": planner.address,
        "SWITCHBOARD_EDGE_API_KEYS": keys,
        "SWITCHBOARD_EDGE_VALKEY_URL": valkey_url,
        "SWITCHBOARD_EDGE_RATE_LIMIT_PER_SECOND": "0",
        "SWITCHBOARD_EDGE_MAX_STREAMS_PER_CLIENT": str(CAP),
        "SWITCHBOARD_EDGE_STREAM_LEASE_SECONDS": str(LEASE_SECONDS),
        "SWITCHBOARD_EDGE_HEARTBEAT_SECONDS": "0.2",
        "SWITCHBOARD_EDGE_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def held_job(planner: StandInPlanner) -> StandInPlanner:
    planner.jobs["jobs/j-1"] = job("j-1", jobs_pb2.Job.RUNNING)
    planner.hold = True  # every watch stays open; only heartbeats flow
    return planner


@contextlib.asynccontextmanager
async def sse(
    http: httpx.AsyncClient, edge: EdgeProcess, key: str
) -> AsyncIterator[httpx.Response]:
    url = f"{edge.url}/v1/jobs/j-1/events"
    async with http.stream("GET", url, headers={"Authorization": f"Bearer {key}"}) as answer:
        if answer.status_code != 200:
            await answer.aread()
        yield answer


async def _refused_socket(edge: EdgeProcess, key: str) -> int:
    url = f"ws://127.0.0.1:{edge.port}/v1/chat/ws"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with connect(url, additional_headers=headers, open_timeout=WAIT_SECONDS):
            return 101
    except InvalidStatus as exc:
        assert exc.response.headers["Retry-After"] == "2"
        return exc.response.status_code


def _reason(answer: httpx.Response) -> str:
    return str(answer.json()["error"]["details"][0]["reason"])


async def _opens_within(
    http: httpx.AsyncClient, edge: EdgeProcess, key: str, seconds: float
) -> bool:
    async with asyncio.timeout(seconds):
        while True:
            async with sse(http, edge, key) as answer:
                if answer.status_code == 200:
                    return True
            await asyncio.sleep(0.1)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_streams_of_one_client_are_capped_over_both_replicas(
    held_job: StandInPlanner, valkey_url: str, tmp_path: Path
) -> None:
    capped, other = f"capped-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    env = _env(held_job, valkey_url, f"key-c={capped},key-o={other}")
    async with (
        edges(tmp_path, env, count=2) as (one, two),
        httpx.AsyncClient(timeout=30) as http,
        contextlib.AsyncExitStack() as streams,
    ):
        first = await streams.enter_async_context(sse(http, one, "key-c"))
        second = await streams.enter_async_context(sse(http, two, "key-c"))
        assert (first.status_code, second.status_code) == (200, 200)

        async with sse(http, one, "key-c") as third:
            assert third.status_code == 429
            assert _reason(third) == "TOO_MANY_STREAMS"
            assert third.headers["retry-after"] == "2"
        assert await _refused_socket(two, "key-c") == 429
        async with sse(http, one, "key-o") as others:
            assert others.status_code == 200, "another client has slots of its own"

        # Ending a stream frees its slot, on whichever replica the next one opens.
        await streams.aclose()
        assert await _opens_within(http, two, "key-c", 10)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_killed_edges_slots_expire_with_their_lease(
    held_job: StandInPlanner, valkey_url: str, tmp_path: Path
) -> None:
    client = f"killed-{uuid.uuid4().hex[:8]}"
    env = _env(held_job, valkey_url, f"key-k={client}")
    async with (
        edges(tmp_path, env, count=2) as (doomed, survivor),
        httpx.AsyncClient(timeout=30) as http,
    ):
        async with sse(http, doomed, "key-k") as a, sse(http, doomed, "key-k") as b:
            assert (a.status_code, b.status_code) == (200, 200)
            doomed.popen.kill()  # no release, no renewal from here on
            doomed.popen.wait(timeout=10)
        async with sse(http, survivor, "key-k") as refused:
            assert refused.status_code == 429
        assert await _opens_within(http, survivor, "key-k", 4 * LEASE_SECONDS)


@pytest.mark.asyncio
async def test_without_valkey_streams_open_unchecked_and_are_counted(
    held_job: StandInPlanner, no_planner_address: str
) -> None:
    """Fail open: Valkey (here an address nothing listens on) cannot answer."""
    unchecked = ("switchboard_edge_stream_slots_total", {"decision": "unchecked"})
    before = REGISTRY.get_sample_value(*unchecked) or 0.0
    async with (
        edge_client(
            held_job.address,
            valkey_url=f"valkey://{no_planner_address}/0",
            max_streams_per_client=1,
        ) as http,
        http.stream("GET", "/v1/jobs/j-1/events") as a,
        http.stream("GET", "/v1/jobs/j-1/events") as b,
    ):
        assert (a.status_code, b.status_code) == (200, 200)
    assert (REGISTRY.get_sample_value(*unchecked) or 0.0) == before + 2
