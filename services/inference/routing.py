"""Routing: a route's candidates tried in order, behind each one's breaker and admission.

The router skips a candidate whose breaker is open and falls back to the next one when a
call fails for the backend's own reasons (FALLBACK_REASONS). It never falls back on what a
different model could not fix either: bad input, a full queue (load is shed back to the
caller, not spilled onto a second-choice model), a client's cancel. The caller decides
whether falling back is still possible, e.g. a generation that has streamed a token never
does. When no candidate is left, the last failure is the answer, or CIRCUIT_OPEN with a
RetryInfo when every candidate was skipped for its open breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import prometheus_client

from switchboard.common.errors import SwitchboardError

from .admission import Admission
from .breaker import Breaker, BreakerConfig, Clock, Permit, State
from .errors import circuit_open
from .models import Catalog, Model, Route

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures that say something about the backend: they count against its breaker.
FAULT_REASONS = frozenset(
    {
        "BACKEND_UNAVAILABLE",
        "BACKEND_ERROR",
        "BACKEND_TIMEOUT",
        # From Triton, not from the catalog: the model is declared but not deployed.
        "MODEL_NOT_FOUND",
        "FIRST_TOKEN_TIMEOUT",
        "INTER_TOKEN_TIMEOUT",
    }
)
# Failures another candidate may not have. Timeouts are not here: the deadline they hit
# is the whole request's, so no time is left for a second choice.
FALLBACK_REASONS = frozenset(
    {"BACKEND_UNAVAILABLE", "BACKEND_ERROR", "MODEL_NOT_FOUND", "CIRCUIT_OPEN"}
)

BREAKER_STATE = prometheus_client.Gauge(
    "switchboard_inference_breaker_state",
    "Circuit breaker state per backend model: 0 closed, 1 half-open, 2 open.",
    ["model"],
)
BREAKER_TRANSITIONS = prometheus_client.Counter(
    "switchboard_inference_breaker_transitions_total",
    "Circuit breaker state changes, by the state entered.",
    ["model", "to"],
)
FALLBACKS = prometheus_client.Counter(
    "switchboard_inference_fallbacks_total",
    "Times a route moved past a candidate, by the candidate and why (a reason, or"
    " CIRCUIT_OPEN when its breaker was open).",
    ["route", "model", "reason"],
)
STATE_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


def _transition(model: str, before: State, after: State) -> None:
    BREAKER_STATE.labels(model).set(STATE_VALUES[after])
    BREAKER_TRANSITIONS.labels(model, after.value).inc()
    log.warning(
        "circuit breaker changed state",
        extra={"fields": {"model": model, "from": before.value, "to": after.value}},
    )


@dataclass(frozen=True)
class Bounds:
    max_in_flight: int
    max_queued: int


@dataclass
class Backend:
    """One Triton model as the router sees it: its breaker and its admission bounds."""

    model: Model
    breaker: Breaker
    admission: Admission


def is_fault(error: SwitchboardError) -> bool:
    return error.reason in FAULT_REASONS


class Router:
    def __init__(
        self,
        catalog: Catalog,
        breaker: BreakerConfig,
        bounds: Mapping[str, Bounds],
        *,
        queue_retry_after_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self._backends: dict[str, Backend] = {}
        for model in catalog:
            limit = bounds[model.task]
            self._backends[model.name] = Backend(
                model,
                Breaker(model.name, breaker, clock=clock, listener=_transition),
                Admission(model.name, limit.max_in_flight, limit.max_queued, queue_retry_after_s),
            )
            BREAKER_STATE.labels(model.name).set(0)

    def resolve(self, name: str, task: str) -> Route:
        return self.catalog.resolve(name, task)

    def backend(self, model: str) -> Backend:
        return self._backends[model]

    async def first_success(
        self,
        route: Route,
        attempt: Callable[[Backend], Awaitable[T]],
        *,
        may_fall_back: Callable[[SwitchboardError], bool] = lambda _: True,
    ) -> T:
        """`attempt` on each candidate in turn until one succeeds or falling back must stop."""
        last: SwitchboardError | None = None
        skipped: list[Backend] = []
        for n, model in enumerate(route.candidates, 1):
            backend = self._backends[model.name]
            more = n < len(route.candidates)
            if not backend.breaker.available():
                skipped.append(backend)
                _fell_back(route, model, "CIRCUIT_OPEN", more)
                continue
            try:
                return await attempt(backend)
            except SwitchboardError as exc:
                if exc.reason not in FALLBACK_REASONS or not may_fall_back(exc):
                    raise
                last = exc
                _fell_back(route, model, exc.reason, more)
        if last is not None:
            raise last
        wait = min((b.breaker.retry_after() for b in skipped), default=0.0)
        raise circuit_open(route.name, [b.model.name for b in skipped], wait)


def _fell_back(route: Route, model: Model, reason: str, more: bool) -> None:
    if more:  # past the last candidate there is nothing to fall back to
        FALLBACKS.labels(route.name, model.name, reason).inc()
        fields = {"route": route.name, "model": model.name, "reason": reason}
        log.info("falling back to the next candidate", extra={"fields": fields})


@asynccontextmanager
async def admitted(backend: Backend, wait_until: float | None = None) -> AsyncIterator[Permit]:
    """A slot of the backend's admission and a permit of its breaker, outcome recorded.

    Waiting for the slot ends with a bare TimeoutError at `wait_until` (loop time), for the
    caller to name. Leaving normally records success unless the body reported an outcome
    itself; a fault records failure; anything else (bad input, a cancel) records nothing.
    """
    async with asyncio.timeout_at(wait_until):
        await backend.admission.acquire()
    try:
        permit = backend.breaker.acquire()
        if permit is None:  # it opened while this call waited in the queue
            name = backend.model.name
            raise circuit_open(name, [name], backend.breaker.retry_after())
        try:
            yield permit
        except SwitchboardError as exc:
            permit.failure() if is_fault(exc) else permit.ignore()
            raise
        except BaseException:
            permit.ignore()
            raise
        permit.success()
    finally:
        backend.admission.release()
