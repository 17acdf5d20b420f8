"""Per-client rate limits: one GCRA bucket per client in Valkey, shared by every replica;
429 with Retry-After and RateLimit headers; an SSE stream counts once; Valkey away fails open."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.edge.ratelimit import Limit, Limits

from .conftest import StandInPlanner, edge_client, job
from .processes import edges

BURST = 10
# One request per 10 s after the burst: however slow this machine, the burst of one client
# on two replicas stays within BURST + 1 if the replicas share the bucket, and would reach
# 2 * BURST if each kept its own.
PER_SECOND = 0.1


def test_limits_parse_defaults_and_overrides() -> None:
    limits = Limits.parse(20, 40, " bench=1000:2000, slow=0.5 ,free=0,")
    assert limits.for_client("anyone") == Limit(20, 40)
    assert limits.for_client("bench") == Limit(1000, 2000)
    assert limits.for_client("slow") == Limit(0.5, 40)
    assert limits.for_client("free") is None
    assert Limits.parse(0, 40, "").for_client("anyone") is None
    for bad in ("nobody", "x=fast", "x=1:many", "x=-1:2", "x=1:0"):
        with pytest.raises(ValueError):
            Limits.parse(20, 40, bad)


def _edge_env(planner: StandInPlanner, valkey_url: str, keys: str) -> dict[str, str]:
    return {
        "SWITCHBOARD_EDGE_PLANNER_ADDRESS": planner.address,
        "SWITCHBOARD_EDGE_API_KEYS": keys,
        "SWITCHBOARD_EDGE_VALKEY_URL": valkey_url,
        "SWITCHBOARD_EDGE_RATE_LIMIT_PER_SECOND": str(PER_SECOND),
        "SWITCHBOARD_EDGE_RATE_LIMIT_BURST": str(BURST),
        "SWITCHBOARD_EDGE_HEARTBEAT_SECONDS": "0.2",
        "SWITCHBOARD_EDGE_LOG_LEVEL": "WARNING",
    }


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_one_clients_burst_over_two_replicas_is_limited_and_others_are_not(
    planner: StandInPlanner, valkey_url: str, tmp_path: Path
) -> None:
    # Fresh client ids: the buckets live in the session's Valkey.
    greedy, polite = f"greedy-{uuid.uuid4().hex[:8]}", f"polite-{uuid.uuid4().hex[:8]}"
    env = _edge_env(planner, valkey_url, f"key-g={greedy},key-p={polite}")
    async with edges(tmp_path, env, count=2) as replicas, httpx.AsyncClient(timeout=30) as http:

        async def get(n: int, key: str) -> httpx.Response:
            url = replicas[n % 2].url
            return await http.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"})

        start = time.monotonic()
        answers = await asyncio.gather(
            *(get(n, "key-g") for n in range(4 * BURST)), *(get(n, "key-p") for n in range(4))
        )
        elapsed = time.monotonic() - start
    greedy_answers, polite_answers = answers[: 4 * BURST], answers[4 * BURST :]

    admitted = [a for a in greedy_answers if a.status_code == 200]
    limited = [a for a in greedy_answers if a.status_code == 429]
    assert len(admitted) + len(limited) == len(greedy_answers)
    assert BURST <= len(admitted) <= BURST + 1 + int(elapsed * PER_SECOND), elapsed
    assert {a.url.port for a in limited} == {r.port for r in replicas}, "both replicas limit"
    for answer in limited:
        error = answer.json()["error"]
        assert (error["status"], error["details"][0]["reason"]) == (
            "RESOURCE_EXHAUSTED",
            "RATE_LIMITED",
        )
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["ratelimit-limit"] == str(BURST)
        assert answer.headers["ratelimit-remaining"] == "0"
        assert int(answer.headers["ratelimit-reset"]) >= 1
    remaining = sorted(int(a.headers["ratelimit-remaining"]) for a in admitted)
    assert remaining[-1] == BURST - 1 and all(0 <= r < BURST for r in remaining)
    assert all("retry-after" not in a.headers for a in admitted)

    assert [a.status_code for a in polite_answers] == [200] * 4
    assert {a.headers["ratelimit-limit"] for a in polite_answers} == {str(BURST)}
    reached = [c.metadata["x-client-id"] for c in planner.calls]
    assert reached.count(greedy) == len(admitted), "a refused request never reaches the planner"


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_an_event_stream_counts_once_when_it_opens(
    planner: StandInPlanner, valkey_url: str, tmp_path: Path
) -> None:
    planner.jobs["jobs/j-1"] = job("j-1", jobs_pb2.Job.RUNNING)
    planner.hold = True  # the watch stays open; only heartbeats flow
    watcher = f"watcher-{uuid.uuid4().hex[:8]}"
    env = {
        **_edge_env(planner, valkey_url, f"key-w={watcher}"),
        "SWITCHBOARD_EDGE_RATE_LIMIT_CLIENTS": f"{watcher}={PER_SECOND}:2",
    }
    headers = {"Authorization": "Bearer key-w"}
    async with (
        edges(tmp_path, env) as (edge,),
        httpx.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{edge.url}/v1/jobs/j-1/events", headers=headers) as sse,
    ):
        assert sse.status_code == 200
        assert sse.headers["ratelimit-remaining"] == "1"
        heartbeats = 0
        async for line in sse.aiter_lines():
            heartbeats += line == ": heartbeat"
            if heartbeats == 5:
                break
        # Heartbeats are not requests: the bucket still has the one left at the open.
        second = await http.get(f"{edge.url}/v1/jobs/j-1", headers=headers)
        third = await http.get(f"{edge.url}/v1/jobs/j-1", headers=headers)
    assert (second.status_code, second.headers["ratelimit-remaining"]) == (200, "0")
    assert third.status_code == 429


@pytest.mark.asyncio
async def test_without_valkey_requests_pass_unlimited_and_are_counted(
    planner: StandInPlanner, no_planner_address: str
) -> None:
    """Fail open: Valkey (here an address nothing listens on) cannot answer."""
    unchecked = ("switchboard_edge_rate_limit_decisions_total", {"decision": "unchecked"})
    before = REGISTRY.get_sample_value(*unchecked) or 0.0
    async with edge_client(
        planner.address,
        valkey_url=f"valkey://{no_planner_address}/0",
        rate_limits=Limits(Limit(PER_SECOND, 1)),
    ) as http:
        answers = [await http.get("/v1/jobs") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("ratelimit-limit" not in a.headers for a in answers)
    assert (REGISTRY.get_sample_value(*unchecked) or 0.0) == before + 3
