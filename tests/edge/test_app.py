"""Health, readiness, metrics and the OpenAPI route of the assembled app."""

from __future__ import annotations

import httpx
import pytest

from switchboard.edge.server import build_server

from .conftest import running, settings_for
from .test_routes import EXPECTED

OPENAI_ROUTES = {
    ("POST", "/v1/chat/completions", "CreateChatCompletion"),
    ("POST", "/v1/embeddings", "CreateEmbeddings"),
    ("GET", "/v1/models", "ListOpenAIModels"),
    ("GET", "/v1/models/{model_id}", "GetOpenAIModel"),
}


@pytest.mark.asyncio
async def test_healthz_and_readyz_with_a_serving_planner(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz", headers={"Authorization": ""})
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "planner": "SERVING"})


@pytest.mark.asyncio
async def test_without_a_planner_the_edge_is_live_but_not_ready(no_planner_address: str) -> None:
    async with running(build_server(settings_for(no_planner_address))) as server:
        base_url = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base_url) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            jobs = await http.get("/v1/jobs", headers={"Authorization": "Bearer sb-test-key"})
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "planner": "UNAVAILABLE"}
    assert jobs.status_code == 503
    assert jobs.json()["error"]["status"] == "UNAVAILABLE"
    # The transport's own text would name internal addresses.
    assert no_planner_address.split(":")[1] not in jobs.text


@pytest.mark.asyncio
async def test_openapi_lists_the_derived_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    listed = {
        (method.upper(), path, op["operationId"])
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    # Besides the derived routes, only the hand-written OpenAI-compatible ones.
    assert listed == EXPECTED | OPENAI_ROUTES


@pytest.mark.asyncio
async def test_docs_page_renders_every_operation_offline(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for _, path, operation_id in EXPECTED | OPENAI_ROUTES:
        assert path in page.text and operation_id in page.text
    assert "/v1/chat/ws" in page.text
    # Nothing is loaded from anywhere: no scripts, stylesheets or images.
    assert not any(tag in page.text for tag in ("<script", "<link", "<img", "src="))


@pytest.mark.asyncio
async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "switchboard_edge_http_requests_total" in response.text
