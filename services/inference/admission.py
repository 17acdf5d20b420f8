"""Bounded admission per backend model: so many calls in flight, so many waiting, no more.

A call over both bounds is refused at once with QUEUE_FULL and a RetryInfo: fast failure
lets the caller back off or go elsewhere, while an unbounded queue would only turn
overload into timeouts and memory. Waiters are served first come, first served.
"""

from __future__ import annotations

import asyncio
from collections import deque

import prometheus_client

from .errors import queue_full

IN_FLIGHT = prometheus_client.Gauge(
    "switchboard_inference_in_flight", "Calls running on a backend model now.", ["model"]
)
QUEUED = prometheus_client.Gauge(
    "switchboard_inference_queued", "Calls waiting for a backend model's slot now.", ["model"]
)
REJECTED = prometheus_client.Counter(
    "switchboard_inference_queue_rejections_total",
    "Calls refused with QUEUE_FULL because a model's in-flight and queue bounds were full.",
    ["model"],
)


class Admission:
    def __init__(
        self, model: str, max_in_flight: int, max_queued: int, retry_after_s: float = 1.0
    ) -> None:
        if max_in_flight < 1 or max_queued < 0:
            raise ValueError("max_in_flight must be >= 1 and max_queued >= 0")
        self.model = model
        self.max_in_flight = max_in_flight
        self.max_queued = max_queued
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Takes a slot, waiting in line if need be; raises QueueFull when the line is full."""
        if self.in_flight < self.max_in_flight and not self._waiters:
            self._take()
            return
        if len(self._waiters) >= self.max_queued:
            REJECTED.labels(self.model).inc()
            limit = self.max_in_flight + self.max_queued
            raise queue_full(self.model, limit, self.retry_after_s)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        QUEUED.labels(self.model).inc()
        try:
            await waiter  # resolved by release(), which hands its slot over
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                QUEUED.labels(self.model).dec()
            elif waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as the wait was given up
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            QUEUED.labels(self.model).dec()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; in_flight is unchanged
                return
        self.in_flight -= 1
        IN_FLIGHT.labels(self.model).dec()

    def _take(self) -> None:
        self.in_flight += 1
        IN_FLIGHT.labels(self.model).inc()
