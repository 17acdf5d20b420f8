"""Server-Sent Events: JobEvents framed for EventSource, pumped from a WatchJob call.

Frames: `retry: 2000` first; then per event `id: <cursor>`, `event: <payload field>`,
`data: <JobEvent JSON>`. Heartbeats (the planner's and the edge's own idle timer) are
`: heartbeat` comments with no id, so a client's Last-Event-ID is always a real cursor.
An upstream failure after the first byte becomes `event: error` with the Google error
body, and the stream ends. A response lives at most `max_seconds`; the client then resumes
with Last-Event-ID, possibly on another replica.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Final, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common.errors import SwitchboardError

from . import codec
from .errors import error_body, internal_error
from .planner import WatchCall

log = logging.getLogger(__name__)

RETRY: Final = b"retry: 2000\n\n"
HEARTBEAT: Final = b": heartbeat\n\n"
HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Tick(enum.Enum):
    IDLE = "idle"
    END = "end"


def event_frame(event: events_pb2.JobEvent) -> bytes:
    if event.WhichOneof("payload") == "heartbeat":
        return HEARTBEAT
    lines = [f"id: {_one_line(event.cursor)}"] if event.cursor else []
    lines.append(f"event: {event.WhichOneof('payload') or 'message'}")
    lines.append(f"data: {codec.message_json(event).decode()}")
    return ("\n".join(lines) + "\n\n").encode()


def error_frame(error: SwitchboardError) -> bytes:
    return b"event: error\ndata: " + codec.dumps(error_body(error)) + b"\n\n"


def _one_line(text: str) -> str:
    # A line break inside a field would start a new SSE field.
    return text.replace("\r", " ").replace("\n", " ")


class Upstream:
    """Reads a WatchJob call with a timeout that loses nothing: a read that outlasts
    the timeout stays pending and the next `next` picks it up."""

    def __init__(self, call: WatchCall) -> None:
        self._call = call
        self._pending: asyncio.Future[object] | None = None

    async def next(self, idle_seconds: float) -> events_pb2.JobEvent | Tick:
        """The next event, Tick.IDLE after `idle_seconds` of quiet, or Tick.END.

        Raises grpc.RpcError when the call failed."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._call.read())
        done, _ = await asyncio.wait({self._pending}, timeout=idle_seconds)
        if not done:
            return Tick.IDLE
        pending, self._pending = self._pending, None
        item = pending.result()
        return item if isinstance(item, events_pb2.JobEvent) else Tick.END

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._call.cancel()


class Feed(Protocol):
    """A job's events for one SSE response (hub.Subscription)."""

    async def next(self, idle_seconds: float) -> events_pb2.JobEvent | Tick: ...

    def close(self, *, client_left: bool) -> None: ...


class EventStream(Response):
    """An SSE answer that ends when the watch ends, the client leaves, the edge drains or
    `max_seconds` pass; whichever comes first, it leaves its feed."""

    media_type = "text/event-stream"

    def __init__(
        self,
        feed: Feed,
        first: events_pb2.JobEvent | Tick,
        heartbeat_seconds: float,
        draining: asyncio.Event,
        max_seconds: float,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """`on_close` runs once the stream is over, however it ended (its slot's release)."""
        # Not Response.__init__: that would render an empty body with Content-Length 0.
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self._on_close = on_close
        self._feed = feed
        self._first = first
        self._heartbeat = heartbeat_seconds
        self._draining = draining
        self._max_seconds = max_seconds
        self._client_gone = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        left = asyncio.ensure_future(_disconnected(receive))
        tasks = [
            left,
            asyncio.ensure_future(self._draining.wait()),
            asyncio.ensure_future(asyncio.sleep(self._max_seconds)),
        ]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            tasks.append(asyncio.ensure_future(self._pump(send)))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._on_close is not None:
                self._on_close()
            # Only a client going away may cancel a cancel-on-disconnect job; the edge ending
            # the response (drain, max_seconds) leaves the client free to resume.
            self._feed.close(client_left=left.done() or self._client_gone)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        await write(RETRY)
        item = self._first
        try:
            while item is not Tick.END:
                await write(HEARTBEAT if item is Tick.IDLE else event_frame(item))
                item = await self._feed.next(self._heartbeat)
        except SwitchboardError as error:
            log.info("watch failed", extra={"fields": {"reason": error.reason}})
            await write(error_frame(error))
        except OSError:
            self._client_gone = True  # it left mid-write; __call__ leaves the feed
        except Exception:  # the stream's one failure point, reported in-band
            log.exception("watch stream broke")
            await write(error_frame(internal_error()))


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
