"""Requests are counted by route template (never raw path) and status."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from switchboard.edge.middleware import UNMATCHED

from .conftest import StandInPlanner


def count(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("switchboard_edge_http_requests_total", labels) or 0.0


@pytest.mark.asyncio
async def test_requests_are_counted_by_route_template(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    before_missing = count("GET", "/v1/jobs/{job_id}", "404")
    before_unmatched = count("GET", UNMATCHED, "404")
    before_list = count("GET", "/v1/jobs", "200")
    await client.get("/v1/jobs/abc-1")
    await client.get("/v1/jobs/abc-2")
    await client.get("/no/such/path")
    await client.get("/v1/jobs")
    assert count("GET", "/v1/jobs/{job_id}", "404") == before_missing + 2
    assert count("GET", UNMATCHED, "404") == before_unmatched + 1
    assert count("GET", "/v1/jobs", "200") == before_list + 1
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/jobs/{job_id}"' in metrics
    assert "abc-1" not in metrics
