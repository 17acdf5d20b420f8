"""Every activity scheduled with a heartbeat timeout heartbeats in the background while it
runs, whatever it is waiting on (a model, OCR, Chroma, the event log).

So a worker that dies mid-activity is noticed within the heartbeat timeout, not after the
activity's start-to-close limit (minutes for OCR or indexing), and a cancel reaches the
activity on its next heartbeat. Heartbeats an activity sends itself (with details) still go
out; the worker's throttle merges them with these.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

EVERY_SECONDS = 1.0


class HeartbeatInterceptor(Interceptor):
    def __init__(self, every_seconds: float = EVERY_SECONDS) -> None:
        self.every_seconds = every_seconds

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self.every_seconds)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, every_seconds: float) -> None:
        super().__init__(next)
        self._every = every_seconds

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if not activity.info().heartbeat_timeout:
            return await self.next.execute_activity(input)
        beat = asyncio.create_task(_beat(self._every))
        try:
            return await self.next.execute_activity(input)
        finally:
            beat.cancel()


async def _beat(every_seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every_seconds)
