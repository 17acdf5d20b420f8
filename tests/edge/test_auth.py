"""API keys: Bearer key -> client id, else 401 API_KEY_INVALID before anything else."""

from __future__ import annotations

import httpx
import pytest

from switchboard.common.settings import Secret
from switchboard.edge.auth import ApiKeys
from switchboard.edge.errors import ApiKeyInvalid
from switchboard.edge.server import EdgeServer

from .conftest import StandInPlanner


def test_parse_and_look_up() -> None:
    keys = ApiKeys.parse(Secret(" sb-dev-key=dev , other=ops,,"))
    assert len(keys) == 2
    assert keys.client_id("Bearer sb-dev-key") == "dev"
    assert keys.client_id("bearer   other ") == "ops"
    for header in (None, "", "Bearer", "Bearer ", "Basic sb-dev-key", "Bearer nope", "sb-dev-key"):
        with pytest.raises(ApiKeyInvalid):
            keys.client_id(header)


def test_malformed_pairs_stop_startup_without_showing_the_key() -> None:
    with pytest.raises(ValueError) as caught:
        ApiKeys.parse(Secret("good=dev,secret-key-without-client"))
    assert "secret-key" not in str(caught.value)
    assert "secret" not in repr(ApiKeys.parse(Secret("secret=dev")))


@pytest.mark.asyncio
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic c2I6a2V5"])
async def test_unauthenticated_requests_get_401_and_never_reach_the_planner(
    edge_server: EdgeServer, planner: StandInPlanner, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_server.port}") as http:
        response = await http.get("/v1/jobs", headers=headers)
        events = await http.get("/v1/jobs/job-1/events", headers=headers)
    for answer in (response, events):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        error = answer.json()["error"]
        assert (error["status"], error["details"][0]["reason"]) == (
            "UNAUTHENTICATED",
            "API_KEY_INVALID",
        )
    assert planner.calls == []


@pytest.mark.asyncio
async def test_each_key_is_its_own_client(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    await client.get("/v1/jobs")
    await client.get("/v1/jobs", headers={"Authorization": "Bearer other-key"})
    assert [c.metadata["x-client-id"] for c in planner.calls] == ["tester", "other"]
