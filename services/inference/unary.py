"""Idempotent unary calls (Embed, ExtractText): one deadline, bounded retries, fallbacks.

A call gets one deadline for everything: queueing, every attempt, every backoff. On a
backend fault it is retried on the same model (a few times, with full-jitter exponential
backoff, and only while its breaker still admits calls and the backoff fits before the
deadline), then the router falls back to the next candidate. Generate never comes here:
a generation that has streamed cannot be replayed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import prometheus_client

from switchboard.common.errors import SwitchboardError

from .errors import BackendTimeout
from .models import Model, Route
from .routing import Backend, Router, admitted

T = TypeVar("T")

# Faults a second try on the same model may not meet. MODEL_NOT_FOUND is a fault too (it
# counts against the breaker and falls back) but asking again cannot deploy the model.
RETRY_REASONS = frozenset({"BACKEND_UNAVAILABLE", "BACKEND_ERROR", "BACKEND_TIMEOUT"})

RETRIES = prometheus_client.Counter(
    "switchboard_inference_retries_total",
    "Unary calls retried on the same model, by model and the reason of the failed attempt.",
    ["model", "reason"],
)
LATENCY = prometheus_client.Histogram(
    "switchboard_inference_request_seconds",
    "Successful Embed and ExtractText calls, by task and the model that served, retries and"
    " fallbacks included.",
    ["task", "model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# The work of one attempt: the model to call and the seconds left for it.
Call = Callable[[Model, float], Awaitable[T]]


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    backoff_s: float = 0.05
    max_backoff_s: float = 1.0

    def delay(self, retry: int, rng: Callable[[], float]) -> float:
        """Full jitter: callers that failed together do not come back together."""
        return rng() * min(self.max_backoff_s, self.backoff_s * 2.0**retry)


class UnaryCaller:
    def __init__(
        self, router: Router, policy: RetryPolicy, rng: Callable[[], float] = random.random
    ) -> None:
        self._router = router
        self._policy = policy
        self._rng = rng

    async def call(self, route: Route, work: Call[T], timeout_s: float) -> tuple[T, Model]:
        """`work`'s result and the model that produced it, within `timeout_s` in all."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout_s

        async def attempt(backend: Backend) -> tuple[T, Model]:
            return await self._with_retries(backend, work, deadline), backend.model

        result, model = await self._router.first_success(
            route, attempt, may_fall_back=lambda _: loop.time() < deadline
        )
        LATENCY.labels(route.task, model.name).observe(loop.time() - started)
        return result, model

    async def _with_retries(self, backend: Backend, work: Call[T], deadline: float) -> T:
        loop = asyncio.get_running_loop()
        for retry in itertools.count():
            try:
                return await self._once(backend, work, deadline)
            except SwitchboardError as exc:
                delay = self._policy.delay(retry, self._rng)
                if (
                    exc.reason not in RETRY_REASONS
                    or retry >= self._policy.retries
                    or loop.time() + delay >= deadline
                    or not backend.breaker.available()
                ):
                    raise
                RETRIES.labels(backend.model.name, exc.reason).inc()
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, backend: Backend, work: Call[T], deadline: float) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with admitted(backend, wait_until=deadline):
                return await work(backend.model, max(deadline - loop.time(), 0.001))
        except TimeoutError:  # only the wait for a slot; Triton's own deadline is translated
            raise BackendTimeout(
                f"no slot on {backend.model.name} before the deadline",
                metadata={"model": backend.model.name, "queued": "true"},
            ) from None
