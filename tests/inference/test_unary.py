"""Retries, backoff, deadlines and fallback of idempotent unary calls (pure asyncio).

The work of each attempt is test code that fails as told, so every path is reachable;
test_servicer.py drives the same code through the service with a real Triton.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from switchboard.common.errors import SwitchboardError
from switchboard.inference.breaker import BreakerConfig, State
from switchboard.inference.errors import (
    BackendError,
    BackendRejectedInput,
    BackendTimeout,
    BackendUnavailable,
    ModelNotFound,
)
from switchboard.inference.models import EMBED, Catalog, Model
from switchboard.inference.routing import Bounds, Router
from switchboard.inference.unary import RetryPolicy, UnaryCaller

CATALOG = Catalog([Model("u1", "u1", EMBED), Model("u2", "u2", EMBED)], {"both": ["u1", "u2"]})
FAST = RetryPolicy(retries=2, backoff_s=0.01, max_backoff_s=0.02)


def _router(min_calls: int = 100, max_in_flight: int = 4) -> Router:
    breaker = BreakerConfig(min_calls=min_calls, open_s=30)
    return Router(CATALOG, breaker, {EMBED: Bounds(max_in_flight, 4)})


class Script:
    """Fails each model's attempts with the given errors in turn, then succeeds."""

    def __init__(self, **errors: list[SwitchboardError]) -> None:
        self.errors = errors
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, model: Model, timeout_s: float) -> str:
        self.calls.append((model.name, timeout_s))
        pending = self.errors.get(model.name, [])
        if pending:
            raise pending.pop(0)
        return f"from {model.name}"


def _retries(model: str, reason: str) -> float:
    labels = {"model": model, "reason": reason}
    return REGISTRY.get_sample_value("switchboard_inference_retries_total", labels) or 0


@pytest.mark.asyncio
async def test_a_transient_fault_is_retried_on_the_same_model() -> None:
    before = _retries("u1", "BACKEND_UNAVAILABLE")
    script = Script(u1=[BackendUnavailable("blip"), BackendUnavailable("blip")])
    caller = UnaryCaller(_router(), FAST)

    result, model = await caller.call(CATALOG.resolve("both", EMBED), script, timeout_s=5)

    assert (result, model.name) == ("from u1", "u1")
    assert [name for name, _ in script.calls] == ["u1", "u1", "u1"]
    assert _retries("u1", "BACKEND_UNAVAILABLE") == before + 2


@pytest.mark.asyncio
async def test_after_the_last_retry_it_falls_back() -> None:
    script = Script(u1=[BackendError("x")] * 3)
    caller = UnaryCaller(_router(), FAST)

    _result, model = await caller.call(CATALOG.resolve("both", EMBED), script, timeout_s=5)

    assert model.name == "u2"
    assert [name for name, _ in script.calls] == ["u1", "u1", "u1", "u2"]


@pytest.mark.asyncio
async def test_rejected_input_is_final() -> None:
    script = Script(u1=[BackendRejectedInput("bad")])
    caller = UnaryCaller(_router(), FAST)

    with pytest.raises(BackendRejectedInput):
        await caller.call(CATALOG.resolve("both", EMBED), script, timeout_s=5)

    assert [name for name, _ in script.calls] == ["u1"]


@pytest.mark.asyncio
async def test_a_model_triton_lacks_falls_back_without_retries() -> None:
    script = Script(u1=[ModelNotFound("gone")])
    caller = UnaryCaller(_router(), FAST)

    _result, model = await caller.call(CATALOG.resolve("both", EMBED), script, timeout_s=5)

    assert model.name == "u2"
    assert [name for name, _ in script.calls] == ["u1", "u2"]


@pytest.mark.asyncio
async def test_retries_stop_once_the_breaker_opens() -> None:
    script = Script(u1=[BackendError("x")] * 3)
    router = _router(min_calls=2)
    caller = UnaryCaller(router, FAST)

    _result, model = await caller.call(CATALOG.resolve("both", EMBED), script, timeout_s=5)

    assert model.name == "u2"
    assert [name for name, _ in script.calls] == ["u1", "u1", "u2"]
    assert router.backend("u1").breaker.state is State.OPEN


@pytest.mark.asyncio
async def test_backoff_is_jittered_and_bounded() -> None:
    policy = RetryPolicy(retries=5, backoff_s=0.1, max_backoff_s=0.3)

    assert [policy.delay(r, lambda: 1.0) for r in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert policy.delay(3, lambda: 0.25) == pytest.approx(0.075)


@pytest.mark.asyncio
async def test_every_attempt_gets_only_the_time_left_and_no_backoff_overruns_it() -> None:
    slow = RetryPolicy(retries=5, backoff_s=10, max_backoff_s=10)
    script = Script(u1=[BackendUnavailable("x")] * 5, u2=[BackendUnavailable("y")] * 5)
    caller = UnaryCaller(_router(), slow, rng=lambda: 1.0)

    started = asyncio.get_running_loop().time()
    with pytest.raises(BackendUnavailable, match="y"):
        await caller.call(CATALOG.resolve("both", EMBED), script, timeout_s=0.5)

    # A 10 s backoff never fits in 0.5 s: one try per model, each within the deadline.
    assert asyncio.get_running_loop().time() - started < 0.5
    assert [name for name, _ in script.calls] == ["u1", "u2"]
    assert all(0 < timeout <= 0.5 for _, timeout in script.calls)


@pytest.mark.asyncio
async def test_waiting_for_a_slot_past_the_deadline_is_backend_timeout() -> None:
    router = _router(max_in_flight=1)
    await router.backend("u1").admission.acquire()  # someone else holds the only slot
    caller = UnaryCaller(router, FAST)

    with pytest.raises(BackendTimeout) as raised:
        await caller.call(CATALOG.resolve("u1", EMBED), Script(), timeout_s=0.1)

    assert raised.value.metadata["queued"] == "true"
    # Waiting in line says nothing about the backend.
    assert router.backend("u1").breaker.failures() == (0, 0)
