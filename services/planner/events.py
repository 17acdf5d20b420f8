"""Each job's event log: one Valkey stream per job, replayable from any cursor.

Key `sb:{<client>/<job_id>}:events` (the braces are a cluster hash tag, so the log and its
state index share a slot). Each entry holds one serialized `JobEvent` under field `e`; the
entry id (`<ms>-<seq>`) is the event's cursor. State changes go through a script that records
each state once, so a retried publish never writes a second terminal event.

Watchers replay the stored history themselves (XRANGE) and then follow the process's single
reader (`hub.StreamHub`), which reads every watched log with one blocking XREAD.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf import timestamp_pb2
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2

from . import ids
from .errors import EventLogUnavailable, InvalidCursor
from .hub import Feed, Position, StreamHub

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
_FIELD = b"e"
MAX_BLOCK_SECONDS = 2.0
REPLAY_BATCH = 500
_CURSOR = re.compile(r"^(\d{1,20})-(\d{1,20})$")

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


def stream_key(wid: str) -> str:
    return f"sb:{{{wid}}}:events"


def _states_key(wid: str) -> str:
    return f"sb:{{{wid}}}:states"


def parse_cursor(cursor: str) -> tuple[int, int]:
    """`<ms>-<seq>` as a comparable pair; the empty cursor is the start of the log."""
    if not cursor:
        return (0, 0)
    match = _CURSOR.match(cursor)
    if match is None:
        raise InvalidCursor(f"malformed cursor {cursor!r}; use a JobEvent.cursor")
    return int(match.group(1)), int(match.group(2))


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def job_event(wid: str, **payload: Any) -> events_pb2.JobEvent:
    """A new event of the workflow's job, stamped now; `payload` is one JobEvent field."""
    job = ids.job_name(ids.split_workflow_id(wid)[1])
    return events_pb2.JobEvent(job=job, create_time=now(), **payload)


def is_terminal(event: events_pb2.JobEvent) -> bool:
    return event.HasField("state_changed") and event.state_changed.state in TERMINAL_STATES


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
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
        self.hub: StreamHub[events_pb2.JobEvent] = StreamHub(
            client,
            _decode,
            block_ms=max(1, int(_block_limit(client) * 1000)),
            queue_limit=queue_limit,
            on_error=_translated,
        )

    @property
    def client(self) -> Valkey:
        return self._client

    async def append(self, wid: str, event: events_pb2.JobEvent) -> str:
        """Appends any event; returns its cursor."""
        with _reachable():
            entry_id = await self._client.xadd(
                stream_key(wid), {_FIELD: event.SerializeToString()}, maxlen=self._maxlen
            )
        return _text(entry_id)

    async def append_state(self, wid: str, event: events_pb2.JobEvent) -> str:
        """Appends a state change once per state; a repeat returns the first one's cursor."""
        state = event.state_changed.state
        ttl = self._terminal_ttl if state in TERMINAL_STATES else self._open_ttl
        args: list[bytes | str | int] = [state, event.SerializeToString(), self._maxlen, ttl]
        with _reachable():
            entry_id = await self._append_state(keys=[stream_key(wid), _states_key(wid)], args=args)
        return _text(entry_id)

    async def exists(self, wid: str) -> bool:
        with _reachable():
            return bool(await self._client.exists(stream_key(wid)))

    async def terminal_cursor(self, wid: str) -> str | None:
        """The cursor of the job's terminal event; None while there is none (or it expired)."""
        with _reachable():
            # valkey types hash commands for its sync and async clients at once.
            pending = self._client.hmget(_states_key(wid), sorted(TERMINAL_STATES))
            found = await cast(Awaitable[list[bytes | None]], pending)
        return next((_text(entry_id) for entry_id in found if entry_id), None)

    async def watch(self, wid: str, after_cursor: str) -> AsyncGenerator[events_pb2.JobEvent, None]:
        """Events after the cursor, stored then live, ending after the terminal event.

        Yields a `gap` when the log was trimmed past the watcher's position: first, for an
        expired cursor, or later, when a slow watcher fell more than the log keeps behind. A
        `heartbeat` (no cursor) whenever nothing happened for a heartbeat interval. Live events
        come from the process's one reader (`hub`); stored ones are read here, from the cursor.
        """
        parse_cursor(after_cursor)
        cursor = after_cursor or "0-0"
        name = ids.job_name(ids.split_workflow_id(wid)[1])
        with _reachable():
            feed = await self.hub.subscribe(stream_key(wid))
        try:
            while True:
                async for event in self._stored(wid, cursor):
                    yield event
                    cursor = event.cursor or cursor  # a gap has none
                    if is_terminal(event):
                        return
                async for event in self._live(feed, name, parse_cursor(cursor)):
                    yield event
                    cursor = event.cursor or cursor
                    if is_terminal(event):
                        return
                # The feed overflowed (this watcher fell behind): re-read from the cursor.
                feed.restart()
        finally:
            await self.hub.unsubscribe(feed)

    async def _stored(self, wid: str, cursor: str) -> AsyncIterator[events_pb2.JobEvent]:
        """The stored events after the cursor, up to the end of the log as it is now; a `gap`
        first whenever the log was trimmed past the cursor (checked before every batch: a slow
        reader's next batch may already have been trimmed away)."""
        while True:
            gap = await self._gap(wid, cursor)
            if gap is not None:
                yield gap
            with _reachable():
                entries = await self._client.xrange(
                    stream_key(wid), min=f"({cursor}", count=REPLAY_BATCH
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

    async def _gap(self, wid: str, cursor: str) -> events_pb2.JobEvent | None:
        """A gap event when entries after the cursor may have been trimmed away."""
        with _reachable():
            try:
                info: dict[str, Any] = await self._client.xinfo_stream(stream_key(wid))
            except valkey_errors.ResponseError:
                return None  # no log (yet): nothing was lost
        trimmed = int(info["entries-added"]) > int(info["length"])
        first = info.get("first-entry")
        if not trimmed or not first:
            return None
        first_cursor = _text(first[0])
        if parse_cursor(cursor) >= parse_cursor(first_cursor):
            return None
        return job_event(wid, gap=events_pb2.Gap(first_available_cursor=first_cursor))


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
