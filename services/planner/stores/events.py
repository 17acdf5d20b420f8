"""Each job's event log: one Valkey stream per job, replayable from any cursor.

Key `sb:{<client>/<job_id>}:events` (the braces are a cluster hash tag, so the log and its
state index share a slot). Each entry holds one serialized `JobEvent` under field `e`; the
entry id (`<ms>-<seq>`) is the event's cursor (`entries`). State changes go through a script
that records each state once, so a retried publish never writes a second terminal event;
`log` events the log cannot take wait in the process's `backlog`.

Watchers replay the stored history themselves (XRANGE) and then follow the process's single
reader (`hub.StreamHub`), which reads every watched log with one blocking XREAD.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, cast

from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common import jobstates
from switchboard.common.jobref import JobRef

from ..shared.errors import EventLogUnavailable
from .backlog import Backlog
from .entries import (
    EVENTS,
    FIELD,
    MAX_STREAM_PART,
    STATES,
    AppendOnce,
    decode,
    job_event,
    now,
    parse_cursor,
    reachable,
    stream_key,
    text,
    translated,
)
from .hub import DEFAULT_OUTAGE_S, Feed, Position, StreamHub

# The servicer, the worker's clients and the tests import these from here.
__all__ = [
    "MAX_BLOCK_SECONDS",
    "REPLAY_BATCH",
    "EventLog",
    "job_event",
    "now",
    "parse_cursor",
    "reachable",
    "stream_key",
]

log = logging.getLogger(__name__)

MAX_BLOCK_SECONDS = 2.0
REPLAY_BATCH = 500


class EventLog:
    """Appends to and reads from job event logs through one injected Valkey client."""

    def __init__(
        self,
        client: Valkey,
        *,
        maxlen: int = 10_000,
        terminal_ttl_seconds: int = 24 * 3600,
        open_ttl_seconds: int = 7 * 24 * 3600,
        heartbeat_seconds: float = 15.0,
        queue_limit: int = 1024,
        reader_outage_seconds: float = DEFAULT_OUTAGE_S,
    ) -> None:
        self._client = client
        self._maxlen = maxlen
        self._terminal_ttl = terminal_ttl_seconds
        # Bounds the life of a log whose job never ends (lost workflow, failed start).
        # The terminal TTL must not exceed the Temporal namespace's retention, so a log is
        # gone before its job id can be used again.
        self._open_ttl = open_ttl_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._append_once = AppendOnce(client, maxlen=maxlen)
        self._backlog = Backlog(self._append_once, ttl_seconds=open_ttl_seconds)
        self.hub: StreamHub[events_pb2.JobEvent] = StreamHub(
            client,
            decode,
            block_ms=max(1, int(_block_limit(client) * 1000)),
            queue_limit=queue_limit,
            on_error=translated,
            outage_seconds=reader_outage_seconds,
        )

    @property
    def client(self) -> Valkey:
        return self._client

    async def append(self, job: JobRef, event: events_pb2.JobEvent) -> str:
        """Appends any event (after the job's kept `log` events); returns its cursor."""
        await self._backlog.flush(job)
        with reachable():
            entry_id = await self._client.xadd(
                job.key(EVENTS), {FIELD: event.SerializeToString()}, maxlen=self._maxlen
            )
        return text(entry_id)

    async def append_once(self, job: JobRef, token: str, event: events_pb2.JobEvent) -> str:
        """Appends an event once per token; a repeat returns the first one's cursor. For a
        publish that may run again after it landed: a retry whose reply was lost, or a local
        activity run again because its workflow task did not complete."""
        await self._backlog.flush(job)
        with reachable():
            entry_id = await self._backlog.append_once(job, token, event.SerializeToString())
        return text(entry_id)

    async def append_state(self, job: JobRef, event: events_pb2.JobEvent) -> str:
        """Appends a state change once per state; a repeat returns the first one's cursor."""
        state = event.state_changed.state
        ttl = self._terminal_ttl if state in jobstates.TERMINAL_STATE_NAMES else self._open_ttl
        data = event.SerializeToString()
        await self._backlog.flush(job)
        with reachable():
            entry_id = await self._append_once(job, STATES, state, data, ttl, stream=True)
        return text(entry_id)

    async def append_log(self, job: JobRef, event: events_pb2.JobEvent) -> bool:
        """Appends a `log` event, or keeps it when the log is unavailable: kept events are
        appended (in order, each once) before the job's next event from this process.
        False when it was kept."""
        self._backlog.keep(job, event.SerializeToString())
        try:
            await self._backlog.flush(job)
        except EventLogUnavailable:
            log.warning("log event kept until the event log is back")
            return False
        return True

    def kept(self, job: JobRef) -> int:
        """How many `log` events of the job wait for the log."""
        return self._backlog.kept(job)

    async def exists(self, job: JobRef) -> bool:
        with reachable():
            return bool(await self._client.exists(job.key(EVENTS)))

    async def terminal_cursor(self, job: JobRef) -> str | None:
        """The cursor of the job's terminal event; None while there is none (or it expired)."""
        with reachable():
            # valkey types hash commands for its sync and async clients at once.
            pending = self._client.hmget(job.key(STATES), sorted(jobstates.TERMINAL_STATE_NAMES))
            found = await cast(Awaitable[list[bytes | None]], pending)
        return next((text(entry_id) for entry_id in found if entry_id), None)

    async def ending(self, job: JobRef, end: str, count: int) -> list[events_pb2.JobEvent]:
        """The event at cursor `end` (the terminal one) and up to `count - 1` events before
        it, newest first."""
        with reachable():
            entries = await self._client.xrevrange(job.key(EVENTS), max=end, count=count)
        return [decode(text(entry_id), fields) for entry_id, fields in entries]

    async def watch(
        self, job: JobRef, after_cursor: str
    ) -> AsyncGenerator[events_pb2.JobEvent, None]:
        """Events after the cursor, stored then live, ending after the terminal event; a
        watch that starts (or resumes) once the job has ended replays the whole stored log
        after the cursor, also what was logged after the terminal event (the webhook's
        `webhook` events), and ends there.

        Yields a `gap` when the log was trimmed past the watcher's position: first, for an
        expired cursor, or later, when a slow watcher fell more than the log keeps behind. A
        `heartbeat` (no cursor) whenever nothing happened for a heartbeat interval. Live events
        come from the process's one reader (`hub`); stored ones are read here, from the cursor.
        """
        parse_cursor(after_cursor)
        cursor = after_cursor or "0-0"
        with reachable():
            feed = await self.hub.subscribe(job.key(EVENTS))
        try:
            ended = False
            while True:
                async for event in self._stored(job, cursor):
                    yield event
                    cursor = event.cursor or cursor  # a gap has none
                    ended = ended or jobstates.is_terminal(event)
                if ended or await self._ended_before(job, cursor):
                    return
                async for event in self._live(feed, job.name, parse_cursor(cursor)):
                    yield event
                    cursor = event.cursor or cursor
                    if jobstates.is_terminal(event):
                        return
                # The feed overflowed (this watcher fell behind): re-read from the cursor.
                feed.restart()
        finally:
            await self.hub.unsubscribe(feed)

    async def _ended_before(self, job: JobRef, cursor: str) -> bool:
        """Whether the job's terminal event is at or before the cursor."""
        end = await self.terminal_cursor(job)
        return end is not None and parse_cursor(cursor) >= parse_cursor(end)

    async def _stored(self, job: JobRef, cursor: str) -> AsyncIterator[events_pb2.JobEvent]:
        """The stored events after the cursor, up to the end of the log as it is now; a `gap`
        first whenever the log was trimmed past the cursor (checked before every batch: a slow
        reader's next batch may already have been trimmed away)."""
        while True:
            gap = await self._gap(job, cursor)
            if gap is not None:
                yield gap
            if parse_cursor(cursor) == (MAX_STREAM_PART, MAX_STREAM_PART):
                return  # the last id there can be: nothing follows (and Valkey refuses `(` it)
            with reachable():
                entries = await self._client.xrange(
                    job.key(EVENTS), min=f"({cursor}", count=REPLAY_BATCH
                )
            for entry_id, fields in entries:
                event = decode(text(entry_id), fields)
                cursor = event.cursor
                yield event
            if len(entries) < REPLAY_BATCH:
                return

    async def _live(
        self, feed: Feed[events_pb2.JobEvent], name: str, after: Position
    ) -> AsyncIterator[events_pb2.JobEvent]:
        """Live events after `after`, with heartbeats in silences, until the feed overflows."""
        while not feed.overflowed:
            item = await feed.next(self._heartbeat_seconds)
            if item is None:
                yield events_pb2.JobEvent(
                    job=name, create_time=now(), heartbeat=events_pb2.Heartbeat()
                )
                continue
            at, event = item
            if at <= after:
                continue  # read by the replay already
            after = at
            yield event

    async def _gap(self, job: JobRef, cursor: str) -> events_pb2.JobEvent | None:
        """A gap event when entries after the cursor may have been trimmed away."""
        with reachable():
            try:
                info: dict[str, Any] = await self._client.xinfo_stream(job.key(EVENTS))
            except valkey_errors.ResponseError:
                return None  # no log (yet): nothing was lost
        trimmed = int(info["entries-added"]) > int(info["length"])
        first = info.get("first-entry")
        if not trimmed or not first:
            return None
        first_cursor = text(first[0])
        if parse_cursor(cursor) >= parse_cursor(first_cursor):
            return None
        return job_event(job, gap=events_pb2.Gap(first_available_cursor=first_cursor))


def _block_limit(client: Valkey) -> float:
    """How long one XREAD may block: well below the client's socket timeout (5 s unless set),
    which would otherwise end an idle watch with a read timeout."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return MAX_BLOCK_SECONDS if timeout is None else min(MAX_BLOCK_SECONDS, timeout / 2)
