"""One upstream WatchJob per (client, job) on this edge, shared by all its subscribers.

The first subscriber opens a `Channel`: one WatchJob call from its cursor, whose events go
into a bounded buffer of recent events and to every subscriber's queue. A later subscriber
whose cursor is in the buffer (or is where the buffer starts) first gets the buffered events
after it, then the live ones: both happen in one step of the event loop, so there is no gap
and no duplicate. One whose cursor is older opens a replay call of its own and switches to
the shared feed at the first replayed event the shared feed also holds.

A slow subscriber never stalls the others: when its queue is full it is cut off the shared
feed and resumes from its own cursor, from the buffer if it can or else by its own replay
(whose flow control then paces it). The channel closes when the upstream ends (after the
terminal event) or when its last subscriber leaves. If that last subscriber was a client
that went away before the end and the job carries the label `cancel-on-disconnect=true`,
the edge cancels the job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final

import grpc
import prometheus_client

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.callmetadata import Metadata
from switchboard.common.errors import SwitchboardError
from switchboard.common.jobstates import is_terminal

from .errors import internal_error, upstream_error
from .planner import Planner
from .sse import Tick
from .subscription import Subscription

log = logging.getLogger(__name__)

BUFFER_EVENTS: Final = 512
CANCEL_LABEL: Final = "cancel-on-disconnect"
_UNFINISHED: Final = frozenset({jobs_pb2.Job.QUEUED, jobs_pb2.Job.RUNNING})

UPSTREAMS = prometheus_client.Gauge(
    "switchboard_edge_watch_upstreams", "Shared upstream WatchJob calls open on this edge."
)

Key = tuple[str, str]


class Hub:
    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self._channels: dict[Key, Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, client: str, job: str, cursor: str, metadata: Metadata) -> Subscription:
        """Follows `job` (`jobs/{id}`) of `client` from after `cursor` ("" = the start)."""
        key = (client, job)
        channel = self._channels.get(key)
        if channel is None or channel.finished:
            channel = Channel(self, key, cursor, metadata)
            self._channels[key] = channel
        return channel.join(cursor, metadata)

    def channels(self) -> int:
        return len(self._channels)

    def forget(self, channel: Channel) -> None:
        if self._channels.get(channel.key) is channel:
            del self._channels[channel.key]

    def abandoned(self, job: str, metadata: Metadata) -> None:
        """The last client left before the end: cancel the job if it asked for that."""
        task = asyncio.ensure_future(self._cancel_if_asked(job, metadata))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_if_asked(self, job: str, metadata: Metadata) -> None:
        try:
            found = await self.planner.call("GetJob", jobs_pb2.GetJobRequest(name=job), metadata)
            assert isinstance(found, jobs_pb2.Job)
            if found.labels.get(CANCEL_LABEL) != "true" or found.state not in _UNFINISHED:
                return
            await self.planner.call("CancelJob", jobs_pb2.CancelJobRequest(name=job), metadata)
            log.info("cancelled on disconnect", extra={"fields": {"job": job}})
        except SwitchboardError as exc:
            log.warning("cancel on disconnect failed", extra={"fields": {"reason": exc.reason}})

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            channel.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Channel:
    """One upstream WatchJob call and what it fans out to."""

    def __init__(self, hub: Hub, key: Key, cursor: str, metadata: Metadata) -> None:
        self.key = key
        self._hub = hub
        self._metadata = metadata
        self._buffer: deque[events_pb2.JobEvent] = deque()
        # The cursor just before buffer[0]; None once an event without one was dropped.
        self._base: str | None = cursor
        self._members: set[Subscription] = set()
        # Tick.END or the error, once the upstream has finished.
        self._final: Tick | SwitchboardError | None = None
        self._terminal = False
        self._closed = False
        self.planner = hub.planner
        request = jobs_pb2.WatchJobRequest(name=key[1], after_cursor=cursor)
        self._call = hub.planner.watch(request, metadata)
        self._task = asyncio.ensure_future(self._run())

    @property
    def finished(self) -> bool:
        return self._final is not None or self._closed

    def join(self, cursor: str, metadata: Metadata) -> Subscription:
        subscription = Subscription(self, cursor, metadata)
        self._members.add(subscription)
        subscription.attach()
        return subscription

    def resume_index(self, cursor: str) -> int | None:
        """Where in the buffer the events after `cursor` start; None if it does not know."""
        if cursor == self._base:
            return 0
        for index in range(len(self._buffer) - 1, -1, -1):
            if cursor and self._buffer[index].cursor == cursor:
                return index + 1
        return None

    def attach(self, subscription: Subscription, start: int | None) -> None:
        """Feeds `subscription` from now on; it first gets the buffer from `start`, or all
        of it (to match its replay against) when `start` is None."""
        events = list(self._buffer)[start or 0 :]
        subscription.fill(events, self._final)

    def leave(self, subscription: Subscription, client_left: bool) -> None:
        self._members.discard(subscription)
        if self._members or self._closed:
            return
        abandoned = client_left and self._final is None and not self._terminal
        self.close()
        if abandoned:
            self._hub.abandoned(self.key[1], self._metadata)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._call.cancel()
        self._task.cancel()
        self._hub.forget(self)

    async def _run(self) -> None:
        final: Tick | SwitchboardError = Tick.END
        # Counted here, not at the call: a task cancelled before it ran never reaches finally.
        UPSTREAMS.inc()
        try:
            async for event in self._call:
                self._publish(event)
        except grpc.RpcError as exc:
            final = upstream_error(exc)
        except Exception:  # a bug here must end the subscribers' streams, not hang them
            log.exception("shared watch broke")
            final = internal_error()
        finally:
            UPSTREAMS.dec()
        self._final = final
        self._hub.forget(self)
        if not self._closed:
            for subscription in list(self._members):
                subscription.push_final(final)

    def _publish(self, event: events_pb2.JobEvent) -> None:
        if event.WhichOneof("payload") == "heartbeat":
            for subscription in self._members:
                subscription.push_heartbeat(event)
            return
        if len(self._buffer) >= BUFFER_EVENTS:
            self._base = self._buffer.popleft().cursor or None
        self._buffer.append(event)
        self._terminal = self._terminal or is_terminal(event)
        for subscription in list(self._members):
            subscription.push(event)
