"""The readiness canary against the real Triton."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from switchboard.inference import canary
from switchboard.inference.models import GENERATE, Model, Route, default_catalog
from switchboard.inference.triton import TritonClient

from ..stack import free_ports
from .support import TritonProcess

STREAMER = Model("test-streamer", "test-streamer", GENERATE, takes_max_tokens=True)
FAIL = Model("test-fail", "test-fail", GENERATE)
ABSENT = Model("not-in-triton", "not-in-triton", GENERATE)


@pytest_asyncio.fixture
async def triton(triton_server: TritonProcess) -> AsyncIterator[TritonClient]:
    client = TritonClient(triton_server.grpc_address)
    yield client
    await client.close()


def _route(name: str, *models: Model) -> Route:
    return Route(name, models[0].task, models)


@pytest.mark.asyncio
async def test_canary_passes_on_a_working_model(triton: TritonClient) -> None:
    routes = [_route("streamer", STREAMER)]

    assert await canary.wait_until_healthy(triton, routes) == (1, {"streamer": "test-streamer"})


@pytest.mark.asyncio
async def test_canary_fails_on_a_failing_model(triton: TritonClient) -> None:
    with pytest.raises(canary.CanaryFailed, match="this model always fails"):
        await canary.probe(triton, FAIL, timeout_s=5)


@pytest.mark.asyncio
async def test_a_route_passes_on_its_fallback(triton: TritonClient) -> None:
    served = await canary.probe_routes(triton, [_route("flaky", FAIL, STREAMER)], timeout_s=5)

    assert served == {"flaky": "test-streamer"}


@pytest.mark.asyncio
async def test_a_route_fails_when_no_candidate_passes(triton: TritonClient) -> None:
    routes = [_route("streamer", STREAMER), _route("broken", FAIL)]

    with pytest.raises(canary.CanaryFailed, match="route 'broken'"):
        await canary.probe_routes(triton, routes, timeout_s=5)


@pytest.mark.asyncio
async def test_routes_not_deployed_are_skipped_but_one_must_pass(triton: TritonClient) -> None:
    served = await canary.probe_routes(
        triton, [_route("absent", ABSENT), _route("streamer", STREAMER)], timeout_s=5
    )
    assert served == {"streamer": "test-streamer"}

    with pytest.raises(canary.CanaryFailed, match="none of the canary routes is deployed"):
        await canary.probe_routes(triton, [_route("absent", ABSENT)], timeout_s=5)


@pytest.mark.asyncio
async def test_a_route_real_traffic_just_proved_is_not_probed(triton: TritonClient) -> None:
    # test-fail would fail a probe: passing shows it was not called.
    served = await canary.probe_routes(
        triton, [_route("proven", FAIL)], timeout_s=5, fresh=lambda m: m.name == "test-fail"
    )

    assert served == {"proven": "test-fail"}


@pytest.mark.asyncio
async def test_the_default_canary_routes_pass(triton: TritonClient) -> None:
    catalog = default_catalog(test_models=True)
    routes = [catalog.route(name) for name in ("default-chat", "default-embed", "test-streamer")]
    deployed = await triton.repository()

    served = await canary.probe_routes(triton, routes, timeout_s=30)

    assert served["test-streamer"] == "test-streamer"
    for name, model in (
        ("default-chat", "smollm2-135m-instruct"),
        ("default-embed", "all-minilm-l6-v2"),
    ):
        assert served.get(name) == (model if model in deployed else None)


@pytest.mark.asyncio
async def test_canary_keeps_retrying_while_triton_is_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=canary.__name__)
    (port,) = free_ports(1)
    client = TritonClient(f"127.0.0.1:{port}")
    try:
        waiting = asyncio.create_task(
            canary.wait_until_healthy(
                client, [_route("s", STREAMER)], first_backoff_s=0.05, max_backoff_s=0.1
            )
        )
        await asyncio.sleep(0.6)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        await client.close()

    attempts = [r for r in caplog.records if r.getMessage() == "canary failed; retrying"]
    assert len(attempts) >= 3


@pytest.mark.asyncio
async def test_the_periodic_canary_reports_each_pass_with_the_serving_models(
    triton: TritonClient,
) -> None:
    passes: list[dict[str, str]] = []
    changes: list[bool] = []
    two_passes = asyncio.Event()

    async def on_change(healthy: bool) -> None:
        changes.append(healthy)

    def on_pass(served: dict[str, str]) -> None:
        passes.append(served)
        if len(passes) == 2:
            two_passes.set()

    watching = asyncio.create_task(
        canary.watch(
            triton,
            [_route("flaky", FAIL, STREAMER)],
            on_change,
            interval_s=0.05,
            timeout_s=5,
            on_pass=on_pass,
        )
    )
    try:
        await asyncio.wait_for(two_passes.wait(), 10)
    finally:
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching

    assert passes[:2] == [{"flaky": "test-streamer"}] * 2  # every pass, not only changes
    assert changes == []  # healthy from the start: no change to report
