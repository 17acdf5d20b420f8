"""Each job's event log: one Valkey stream per job, replayable from any cursor.

Key `sb:{<client>/<job_id>}:events` (the braces are a cluster hash tag, so the log and its
state index share a slot). Each entry holds one serialized `JobEvent` under field `e`; the
entry id (`<ms>-<seq>`) is the event's cursor. State changes go through a script that records
each state once, so a retried publish never writes a second terminal event.

Watchers replay the stored history themselves (XRANGE) and then follow the process's single
reader (`hub.StreamHub`), which reads every watched log with one blocking XREAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf import timestamp_pb2
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common import jobstates
from switchboard.common.jobref import JobRef

from ..shared.errors import EventLogUnavailable, InvalidCursor
from .hub import DEFAULT_OUTAGE_S, Feed, Position, StreamHub

log = logging.getLogger(__name__)

_FIELD = b"e"
# A job's keys (JobRef.key): its event stream (the edge reads the log through the planner,
# never these keys), the entry id of each state logged, and the tokens of `log` events
# appended once.
_EVENTS, _STATES, _ONCE = "events", "states", "once"
MAX_BLOCK_SECONDS = 2.0
REPLAY_BATCH = 500
_CURSOR = re.compile(r"^(\d{1,20})-(\d{1,20})$")
MAX_STREAM_PART = 2**64 - 1

# Appends a state change unless this state was already logged; returns the entry id either way.
_APPEND_STATE = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if id then return id end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return id
"""


# Appends an event once per token (a `log` event kept while the log was down, appended when it
# is back: a retry after a lost reply must not add it twice); returns the entry id either way.
_APPEND_ONCE = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if id then return id end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('EXPIRE', KEYS[2], ARGV[4])
return id
"""
# What one process keeps of `log` events the log could not take.
BACKLOG_PER_JOB = 100
BACKLOG_JOBS = 10_000


def stream_key(job: JobRef) -> str:
    """The job's event stream (`sb:{<client>/<job_id>}:events`)."""
    return job.key(_EVENTS)


def parse_cursor(cursor: str) -> tuple[int, int]:
    """`<ms>-<seq>` as a comparable pair; the empty cursor is the start of the log."""
    if not cursor:
        return (0, 0)
    match = _CURSOR.match(cursor)
    if match is None:
        raise InvalidCursor(f"malformed cursor {cursor!r}; use a JobEvent.cursor")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > MAX_STREAM_PART or seq > MAX_STREAM_PART:
        # Valkey's stream ids are two unsigned 64-bit parts; it would refuse this one.
        raise InvalidCursor(f"cursor {cursor!r} is out of range; use a JobEvent.cursor")
    return ms, seq


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def job_event(job: JobRef, **payload: Any) -> events_pb2.JobEvent:
    """A new event of the job, stamped now; `payload` is one JobEvent field."""
    return events_pb2.JobEvent(job=job.name, create_time=now(), **payload)


@contextlib.contextmanager
def reachable() -> Iterator[None]:
    try:
        yield
    except (valkey_errors.ConnectionError, valkey_errors.TimeoutError) as e:
        raise EventLogUnavailable("the event log is unavailable; retry later") from e


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
        self._append_state = client.register_script(_APPEND_STATE)
        self._append_once = client.register_script(_APPEND_ONCE)
        # Per job, in order: (token, serialized event) of `log` events not yet appended.
        self._backlog: dict[JobRef, list[tuple[str, bytes]]] = {}
        self._flushing = asyncio.Lock()
        self.hub: StreamHub[events_pb2.JobEvent] = StreamHub(
            client,
            _decode,
            block_ms=max(1, int(_block_limit(client) * 1000)),
            queue_limit=queue_limit,
            on_error=_translated,
            outage_seconds=reader_outage_seconds,
        )

    @property
    def client(self) -> Valkey:
        return self._client

    async def append(self, job: JobRef, event: events_pb2.JobEvent) -> str:
        """Appends any event (after the job's kept `log` events); returns its cursor."""
        await self._flush(job)
        with reachable():
            entry_id = await self._client.xadd(
                job.key(_EVENTS), {_FIELD: event.SerializeToString()}, maxlen=self._maxlen
            )
        return _text(entry_id)

    async def append_state(self, job: JobRef, event: events_pb2.JobEvent) -> str:
        """Appends a state change once per state; a repeat returns the first one's cursor."""
        state = event.state_changed.state
        ttl = self._terminal_ttl if state in jobstates.TERMINAL_STATE_NAMES else self._open_ttl
        args: list[bytes | str | int] = [state, event.SerializeToString(), self._maxlen, ttl]
        await self._flush(job)
        with reachable():
            entry_id = await self._append_state(
                keys=[job.key(_EVENTS), job.key(_STATES)], args=args
            )
        return _text(entry_id)

    async def append_log(self, job: JobRef, event: events_pb2.JobEvent) -> bool:
        """Appends a `log` event, or keeps it when the log is unavailable: kept events are
        appended (in order, each once) before the job's next event from this process.
        False when it was kept."""
        self._backlog.setdefault(job, []).append((uuid.uuid4().hex, event.SerializeToString()))
        self._bound(job)
        try:
            await self._flush(job)
        except EventLogUnavailable:
            log.warning("log event kept until the event log is back")
            return False
        return True

    def kept(self, job: JobRef) -> int:
        """How many `log` events of the job wait for the log."""
        return len(self._backlog.get(job, ()))

    async def _flush(self, job: JobRef) -> None:
        """Appends the job's kept `log` events, oldest first; raises EventLogUnavailable (and
        keeps the rest) when the log is still down."""
        if job not in self._backlog:
            return
        async with self._flushing:
            pending = self._backlog.get(job, [])
            while pending:
                token, data = pending[0]
                args: list[bytes | str | int] = [token, data, self._maxlen, self._open_ttl]
                with reachable():
                    await self._append_once(keys=[job.key(_EVENTS), job.key(_ONCE)], args=args)
                pending.pop(0)
            self._backlog.pop(job, None)

    def _bound(self, job: JobRef) -> None:
        pending = self._backlog[job]
        if len(pending) > BACKLOG_PER_JOB:
            del pending[0]
            log.warning("kept log events over the limit: the oldest dropped")
        while len(self._backlog) > BACKLOG_JOBS:
            del self._backlog[next(iter(self._backlog))]
            log.warning("kept log events of too many jobs: a job's dropped")

    async def exists(self, job: JobRef) -> bool:
        with reachable():
            return bool(await self._client.exists(job.key(_EVENTS)))

    async def terminal_cursor(self, job: JobRef) -> str | None:
        """The cursor of the job's terminal event; None while there is none (or it expired)."""
        with reachable():
            # valkey types hash commands for its sync and async clients at once.
            pending = self._client.hmget(job.key(_STATES), sorted(jobstates.TERMINAL_STATE_NAMES))
            found = await cast(Awaitable[list[bytes | None]], pending)
        return next((_text(entry_id) for entry_id in found if entry_id), None)

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
            feed = await self.hub.subscribe(job.key(_EVENTS))
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
                    job.key(_EVENTS), min=f"({cursor}", count=REPLAY_BATCH
                )
            for entry_id, fields in entries:
                event = _decode(_text(entry_id), fields)
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
                info: dict[str, Any] = await self._client.xinfo_stream(job.key(_EVENTS))
            except valkey_errors.ResponseError:
                return None  # no log (yet): nothing was lost
        trimmed = int(info["entries-added"]) > int(info["length"])
        first = info.get("first-entry")
        if not trimmed or not first:
            return None
        first_cursor = _text(first[0])
        if parse_cursor(cursor) >= parse_cursor(first_cursor):
            return None
        return job_event(job, gap=events_pb2.Gap(first_available_cursor=first_cursor))


def _decode(cursor: str, fields: dict[bytes, bytes]) -> events_pb2.JobEvent:
    event = events_pb2.JobEvent.FromString(fields[_FIELD])
    event.cursor = cursor
    return event


def _translated(error: Exception) -> Exception:
    """The hub's failure as watchers report it."""
    if isinstance(error, valkey_errors.ConnectionError | valkey_errors.TimeoutError):
        return EventLogUnavailable("the event log is unavailable; retry later")
    return error


def _block_limit(client: Valkey) -> float:
    """How long one XREAD may block: well below the client's socket timeout (5 s unless set),
    which would otherwise end an idle watch with a read timeout."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    return MAX_BLOCK_SECONDS if timeout is None else min(MAX_BLOCK_SECONDS, timeout / 2)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
