"""One subscriber of a shared WatchJob feed (hub.Channel): what it missed, then the live
events; while its cursor is older than the channel's buffer, a replay call of its own until
the replay reaches an event the shared feed holds too.

A subscriber whose queue overflows is cut off the feed and resumes from its own cursor, from
the channel's buffer if it can, else by its own replay, whose gRPC flow control then paces it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final, Protocol

import grpc
import prometheus_client

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.callmetadata import Metadata
from switchboard.common.errors import SwitchboardError

from .errors import upstream_error
from .planner import Planner
from .sse import Tick, Upstream

log = logging.getLogger(__name__)

# Twice hub.BUFFER_EVENTS: one joining a full buffer still has room for live events.
QUEUE_LIMIT: Final = 1024

SUBSCRIBERS = prometheus_client.Gauge(
    "switchboard_edge_watch_subscribers", "Subscribers of the shared WatchJob feeds."
)
REPLAYS = prometheus_client.Counter(
    "switchboard_edge_watch_replays_total",
    "Replay calls opened for subscribers whose cursor was older than the shared buffer.",
)

# What a subscriber's queue holds: events, then Tick.END or the upstream's error.
Item = events_pb2.JobEvent | Tick | SwitchboardError


class Feed(Protocol):
    """What a subscriber needs of the shared feed it follows (`hub.Channel`); a protocol, so
    this module does not import the hub that imports it."""

    @property
    def key(self) -> tuple[str, str]: ...

    @property
    def planner(self) -> Planner: ...

    def resume_index(self, cursor: str) -> int | None: ...

    def attach(self, subscription: Subscription, start: int | None) -> None: ...

    def leave(self, subscription: Subscription, client_left: bool) -> None: ...


class Subscription:
    """One subscriber: what it missed, then the shared live feed; while its cursor is older
    than the shared buffer, its own replay call until the two meet."""

    def __init__(self, channel: Feed, cursor: str, metadata: Metadata) -> None:
        self.cursor = cursor
        self._channel = channel
        self._metadata = metadata
        self._queue: deque[Item] = deque()
        # Cursors in the queue, to find where a replay meets the shared feed.
        self._queued: set[str] = set()
        self._attached = False
        self._replay: Upstream | None = None
        self._wake = asyncio.Event()
        self._done = False
        self._closed = False
        SUBSCRIBERS.inc()

    @property
    def replaying(self) -> bool:
        return self._replay is not None

    def attach(self) -> None:
        start = self._channel.resume_index(self.cursor)
        if start is not None:
            self._stop_replay()
        elif self._replay is not None:
            return  # keep replaying; retried after each replayed event
        self._channel.attach(self, start)
        if start is None:
            request = jobs_pb2.WatchJobRequest(name=self._channel.key[1], after_cursor=self.cursor)
            self._replay = Upstream(self._channel.planner.watch(request, self._metadata))
            REPLAYS.inc()

    def fill(
        self, events: list[events_pb2.JobEvent], final: Tick | SwitchboardError | None
    ) -> None:
        self._queue = deque(events)
        self._queued = {e.cursor for e in events if e.cursor}
        if final is not None:
            self._queue.append(final)
        self._attached = True
        self._wake.set()

    def push(self, event: events_pb2.JobEvent) -> None:
        if not self._attached:
            return
        if len(self._queue) >= QUEUE_LIMIT:
            # Too slow for the shared feed: resume from its own cursor instead.
            log.info("subscriber fell behind; re-syncing", extra={"fields": {"job": event.job}})
            self._queue.clear()
            self._queued.clear()
            self._attached = False
        else:
            self._queue.append(event)
            if event.cursor:
                self._queued.add(event.cursor)
        self._wake.set()

    def push_heartbeat(self, event: events_pb2.JobEvent) -> None:
        if self._attached and self._replay is None and len(self._queue) < QUEUE_LIMIT:
            self._queue.append(event)
            self._wake.set()

    def push_final(self, final: Tick | SwitchboardError) -> None:
        if self._attached:
            self._queue.append(final)
            self._wake.set()

    async def next(self, idle_seconds: float) -> events_pb2.JobEvent | Tick:
        """The next event, Tick.IDLE after `idle_seconds` of quiet, or Tick.END after the
        last one; raises the SwitchboardError that ended the watch."""
        while not self._done:
            if not self._attached:
                self.attach()
            if self._replay is not None:
                return await self._replayed(self._replay, idle_seconds)
            if self._queue:
                return self._deliver(self._queue.popleft())
            self._wake.clear()
            try:
                # Not wait_for: on 3.11 it swallows a cancel that meets a wake-up, and the
                # SSE pump cancelled then would keep writing heartbeats to nobody.
                async with asyncio.timeout(idle_seconds):
                    await self._wake.wait()
            except TimeoutError:
                return Tick.IDLE
        return Tick.END

    def _deliver(self, item: Item) -> events_pb2.JobEvent | Tick:
        if isinstance(item, SwitchboardError):
            self._done = True
            raise item
        if isinstance(item, Tick):
            self._done = True
            return Tick.END
        if item.cursor:
            self._queued.discard(item.cursor)
            self.cursor = item.cursor
        return item

    async def _replayed(self, replay: Upstream, idle_seconds: float) -> events_pb2.JobEvent | Tick:
        try:
            item = await replay.next(idle_seconds)
        except grpc.RpcError as exc:
            self._stop_replay()
            self._done = True
            raise upstream_error(exc) from exc
        if item is Tick.END:
            self._stop_replay()
            self._done = True
        if not isinstance(item, events_pb2.JobEvent) or not item.cursor:
            return item
        self.cursor = item.cursor
        if item.cursor in self._queued:
            # The shared feed holds this event too: follow it from the next one on.
            self._skip_through(item.cursor)
            self._stop_replay()
        return item

    def _skip_through(self, cursor: str) -> None:
        """Drops queued events up to and including the one at `cursor`."""
        while self._queue:
            head = self._queue.popleft()
            if isinstance(head, events_pb2.JobEvent) and head.cursor:
                self._queued.discard(head.cursor)
                if head.cursor == cursor:
                    return

    def _stop_replay(self) -> None:
        if self._replay is not None:
            self._replay.cancel()
            self._replay = None

    def close(self, *, client_left: bool) -> None:
        """Leaves the feed; `client_left` when the client went away (not the edge ending it)."""
        if self._closed:
            return
        self._closed = True
        self._stop_replay()
        SUBSCRIBERS.dec()
        self._channel.leave(self, client_left)
