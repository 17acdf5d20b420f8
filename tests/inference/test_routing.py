"""The router's fallback rules and outcome recording (pure asyncio: attempts are test code)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from google.rpc import error_details_pb2

from switchboard.common.errors import SwitchboardError
from switchboard.inference.breaker import BreakerConfig, State
from switchboard.inference.errors import (
    BackendError,
    BackendRejectedInput,
    BackendUnavailable,
    CircuitOpen,
    FirstTokenTimeout,
    QueueFull,
)
from switchboard.inference.models import GENERATE, Catalog, Model
from switchboard.inference.routing import Backend, Bounds, Router, admitted

from .support import detail_of

CATALOG = Catalog(
    [Model("a", "a", GENERATE), Model("b", "b", GENERATE), Model("c", "c", GENERATE)],
    {"abc": ["a", "b", "c"]},
)
BREAKER = BreakerConfig(window_calls=10, window_s=60, failure_ratio=0.5, min_calls=2, open_s=30)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _router(clock: Clock | None = None) -> Router:
    return Router(CATALOG, BREAKER, {GENERATE: Bounds(1, 0)}, clock=clock or Clock())


def _failing(
    errors: dict[str, SwitchboardError], tried: list[str]
) -> Callable[[Backend], Awaitable[str]]:
    async def attempt(backend: Backend) -> str:
        tried.append(backend.model.name)
        async with admitted(backend):
            if backend.model.name in errors:
                raise errors[backend.model.name]
            return backend.model.name

    return attempt


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error", [BackendError("x"), BackendUnavailable("x"), CircuitOpen("x")], ids=str
)
async def test_falls_back_on_backend_faults(error: SwitchboardError) -> None:
    router, tried = _router(), list[str]()
    served = await router.first_success(
        router.resolve("abc", GENERATE), _failing({"a": error}, tried)
    )

    assert (served, tried) == ("b", ["a", "b"])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [BackendRejectedInput("x"), QueueFull("x"), FirstTokenTimeout("x")],
    ids=lambda e: e.reason,
)
async def test_does_not_fall_back_on_what_another_model_cannot_fix(
    error: SwitchboardError,
) -> None:
    router, tried = _router(), list[str]()
    with pytest.raises(type(error)):
        await router.first_success(router.resolve("abc", GENERATE), _failing({"a": error}, tried))

    assert tried == ["a"]


@pytest.mark.asyncio
async def test_the_caller_can_forbid_falling_back() -> None:
    router, tried = _router(), list[str]()
    with pytest.raises(BackendError):
        await router.first_success(
            router.resolve("abc", GENERATE),
            _failing({"a": BackendError("mid-stream")}, tried),
            may_fall_back=lambda _: False,
        )

    assert tried == ["a"]


@pytest.mark.asyncio
async def test_the_last_failure_is_the_answer_when_every_candidate_fails() -> None:
    router, tried = _router(), list[str]()
    errors: dict[str, SwitchboardError] = {
        "a": BackendError("a broke"),
        "b": BackendUnavailable("b down"),
        "c": BackendError("c broke"),
    }
    with pytest.raises(BackendError, match="c broke"):
        await router.first_success(router.resolve("abc", GENERATE), _failing(errors, tried))

    assert tried == ["a", "b", "c"]


@pytest.mark.asyncio
async def test_faults_open_the_breaker_and_open_candidates_are_skipped() -> None:
    clock = Clock()
    router, tried = _router(clock), list[str]()
    route = router.resolve("abc", GENERATE)
    attempt = _failing({"a": BackendError("a broke")}, tried)
    for _ in range(2):
        assert await router.first_success(route, attempt) == "b"
    assert router.backend("a").breaker.state is State.OPEN
    tried.clear()

    assert await router.first_success(route, attempt) == "b"
    assert tried == ["b"]
    clock.now += 30  # half-open: the next call probes "a" again
    assert await router.first_success(route, attempt) == "b"
    assert tried == ["b", "a", "b"]


@pytest.mark.asyncio
async def test_every_breaker_open_is_circuit_open_with_retry_info() -> None:
    clock = Clock()
    router, tried = _router(clock), list[str]()
    for i, name in enumerate(("a", "b", "c")):
        clock.now = 10.0 * i
        for _ in range(2):
            permit = router.backend(name).breaker.acquire()
            assert permit is not None
            permit.failure()

    with pytest.raises(CircuitOpen) as raised:
        await router.first_success(router.resolve("abc", GENERATE), _failing({}, tried))

    assert tried == []
    assert raised.value.reason == "CIRCUIT_OPEN"
    # Now is 20 s; "a" opened first, at 0 s, so it lets a probe through first, at 30 s.
    delay = detail_of(raised.value.to_status(), error_details_pb2.RetryInfo).retry_delay
    assert (delay.seconds, delay.nanos) == (10, 0)


@pytest.mark.asyncio
async def test_only_faults_count_against_the_breaker() -> None:
    router = _router()
    backend = router.backend("a")
    for error in (BackendRejectedInput("bad"), QueueFull("full")):
        for _ in range(3):
            with pytest.raises(type(error)):
                async with admitted(backend):
                    raise error
    assert backend.breaker.failures() == (0, 0)

    for _ in range(2):
        with pytest.raises(BackendError):
            async with admitted(backend):
                raise BackendError("broke")
    assert backend.breaker.state is State.OPEN
    assert backend.admission.in_flight == 0
