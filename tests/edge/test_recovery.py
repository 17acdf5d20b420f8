"""The edge recovers by itself: after Valkey goes away and comes back, API keys from Valkey
and rate limits work again without restarting the edge (valkey-py's pool reconnects on the
next command); after the planner comes back on its address, requests work again (gRPC
channels reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from switchboard.common.grpcserver import ServiceInterceptor
from switchboard.edge.keys import KeyStore
from switchboard.launcher.ports import free_block

from ..stack import start_stack
from .conftest import API_KEY, StandInPlanner, edge_client, job
from .processes import edges

RECOVERY_SECONDS = 20.0


async def _answer_within(
    http: httpx.AsyncClient, url: str, key: str, want: int, seconds: float
) -> httpx.Response:
    """The first answer with status `want`, asking again until `seconds` pass."""
    seen: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                try:
                    answer = await http.get(url, headers={"Authorization": f"Bearer {key}"})
                except httpx.TimeoutException as exc:
                    seen.append(type(exc).__name__)
                    continue
                if answer.status_code == want:
                    return answer
                seen.append(f"{answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"no {want} within {seconds} s; last: {seen[-3:]}") from None


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_keys_and_rate_limits_work_again_after_valkey_restarts(
    planner: StandInPlanner, tmp_path: Path
) -> None:
    ports = free_block()
    state = tmp_path / "valkey"
    valkey_url = f"valkey://127.0.0.1:{ports.valkey}/0"
    stack = start_stack(state, ports, only=("valkey",))
    try:
        store = Valkey.from_url(valkey_url)
        key, _ = await KeyStore(store).create("stored")
        # A key the edge has not seen: no stale cache entry can answer for it.
        unseen, _ = await KeyStore(store).create("stored")
        await store.aclose()
        env = {
            "SWITCHBOARD_EDGE_PLANNER_ADDRESS": planner.address,
            "SWITCHBOARD_EDGE_API_KEYS": "env-key=from-env",
            "SWITCHBOARD_EDGE_VALKEY_URL": valkey_url,
            # Every request asks Valkey (a key seen before is answered from the stale cache
            # only while Valkey is away).
            "SWITCHBOARD_EDGE_KEY_CACHE_SECONDS": "0",
            "SWITCHBOARD_EDGE_LOG_LEVEL": "WARNING",
        }
        async with edges(tmp_path, env) as (edge,), httpx.AsyncClient(timeout=30) as http:
            url = f"{edge.url}/v1/jobs"
            before = await _answer_within(http, url, key, 200, 5)
            assert "ratelimit-limit" in before.headers

            stack.stop()
            away = await _answer_within(http, url, unseen, 503, RECOVERY_SECONDS)
            assert away.json()["error"]["status"] == "UNAVAILABLE"
            unlimited = await _answer_within(http, url, "env-key", 200, 5)
            assert "ratelimit-limit" not in unlimited.headers, "rate limits fail open"

            # Back on the same port with its append-only file: the same key, no edge restart.
            stack = start_stack(state, ports, only=("valkey",))
            back = await _answer_within(http, url, unseen, 200, RECOVERY_SECONDS)
            assert "ratelimit-limit" in back.headers
            limited = await _answer_within(http, url, "env-key", 200, 5)
            assert "ratelimit-limit" in limited.headers
    finally:
        stack.stop()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_requests_work_again_after_the_planner_comes_back(
    planner: StandInPlanner, no_planner_address: str
) -> None:
    """The edge starts against an address nothing serves yet; once a planner serves there,
    requests and event streams work with no restart."""
    planner.jobs["jobs/j-1"] = job("j-1", jobs_pb2.Job.SUCCEEDED)
    async with edge_client(no_planner_address) as http:
        down = await http.get("/v1/jobs/j-1")
        assert down.status_code == 503
        async with _planner_at(planner, no_planner_address):
            await _answer_within(http, "/v1/jobs/j-1", API_KEY, 200, RECOVERY_SECONDS)
            answer = await http.get("/v1/jobs/j-1/events", headers={"Last-Event-ID": "1-0"})
            assert answer.status_code == 204  # nothing after the cursor, and the job is over


@contextlib.asynccontextmanager
async def _planner_at(servicer: StandInPlanner, address: str) -> AsyncIterator[None]:
    """The stand-in planner served (again) at `address`, as a restarted planner would be."""
    server = grpc.aio.server(interceptors=[ServiceInterceptor()])
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    server.add_insecure_port(address)
    await server.start()
    try:
        yield
    finally:
        await server.stop(None)
