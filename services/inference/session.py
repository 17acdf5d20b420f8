"""One Generate stream: many generations multiplexed by request_id, one writer.

A reader task takes requests off the client stream and starts or cancels generations; each
generation runs as its own task. Every response, from the reader or any generation, goes
through one queue that the RPC's response generator drains, so gRPC sees a single writer.
On half-close the open generations finish and then the stream ends; if the stream goes
away first, every open generation is cancelled, which cancels its Triton stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import SwitchboardError
from switchboard.common.validation import validate

from .errors import DuplicateRequestId
from .generation import Generation, Limits
from .models import GENERATE
from .routing import Router
from .triton import TritonClient

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0


class Session:
    def __init__(
        self,
        router: Router,
        triton: TritonClient,
        limits: Limits,
        log_fields: dict[str, str] | None = None,
    ) -> None:
        self._router = router
        self._triton = triton
        self._limits = limits
        self._log_fields = log_fields or {}
        # Unbounded on purpose: emitting never blocks, so a generation's terminal event can
        # never be lost to a cancel; every generation's output is finite anyway.
        self._queue: asyncio.Queue[pb.GenerateResponse | None] = asyncio.Queue()
        self._open: dict[str, Generation] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def responses(
        self, requests: AsyncIterable[pb.GenerateRequest]
    ) -> AsyncIterator[pb.GenerateResponse]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while (response := await self._queue.get()) is not None:
                yield response
            await reader  # surfaces a failed reader as this RPC's error
        finally:
            await self._close(reader)

    async def _read(self, requests: AsyncIterable[pb.GenerateRequest]) -> None:
        try:
            async for request in requests:
                self._handle(request)
            # Half-closed: the open generations still finish and deliver their events.
            if self._tasks:
                await asyncio.wait(set(self._tasks))
        finally:
            self._queue.put_nowait(None)

    def _handle(self, request: pb.GenerateRequest) -> None:
        try:
            validate(request)
            if request.HasField("cancel"):
                self._cancel(request.request_id)
            else:
                self._start(request.request_id, request.start)
        except SwitchboardError as exc:
            log.info(
                "generate request refused",
                extra={"fields": {"request_id": request.request_id, "reason": exc.reason}},
            )
            error = pb.GenerateResponse(request_id=request.request_id, error=exc.to_status())
            self._queue.put_nowait(error)

    def _cancel(self, request_id: str) -> None:
        # An unknown or already finished id is not an error: the cancel raced the end.
        generation = self._open.get(request_id)
        if generation is not None:
            generation.cancel()

    def _start(self, request_id: str, start: pb.GenerateStart) -> None:
        if request_id in self._open:
            raise DuplicateRequestId(
                f"request_id {request_id!r} is already open on this stream",
                metadata={"request_id": request_id},
            )
        # Bounds and breakers are per model, so they apply as each candidate is tried.
        route = self._router.resolve(start.model, GENERATE)
        generation = Generation(
            request_id,
            route,
            start,
            router=self._router,
            triton=self._triton,
            limits=self._limits,
            emit=self._queue.put_nowait,
            log_fields=self._log_fields,
        )
        self._open[request_id] = generation
        task = asyncio.create_task(generation.run())
        self._tasks.add(task)
        # A callback, not a finally: it also runs for a task cancelled before it started.
        task.add_done_callback(lambda t: self._finished(generation, t))

    def _finished(self, generation: Generation, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._open.pop(generation.request_id, None)

    async def _close(self, reader: asyncio.Task[None]) -> None:
        """Cancels whatever is still running; after a clean end that is nothing."""
        pending = [reader, *self._tasks]
        for task in pending:
            task.cancel()
        _done, stuck = await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
        if stuck:
            log.warning("generations did not stop in time", extra={"fields": {"n": len(stuck)}})
