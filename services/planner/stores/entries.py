"""How one job event is kept in its Valkey stream: the key of the job's log, the entry's one
field, the entry id read as the event's cursor, the script that appends an event once, and
Valkey's failures as the planner reports them. Shared by the event log's writers and readers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common.jobref import JobRef

from ..shared.errors import EventLogUnavailable, InvalidCursor

FIELD = b"e"
# A job's keys (JobRef.key): its event stream (the edge reads the log through the planner,
# never these keys), the entry id of each state logged, and the tokens of `log` events
# appended once.
EVENTS, STATES, ONCE = "events", "states", "once"
# Appends an event unless its token (KEYS[2]'s field ARGV[1]: a state, a publish, a kept
# event) was appended already; returns the entry id either way. The token index expires
# after ARGV[4] s, and so does the stream when ARGV[5] is 1 (a state change sets its TTL).
APPEND_ONCE = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if id then return id end
id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
if ARGV[5] == '1' then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return id
"""


class AppendOnce:
    """APPEND_ONCE on one client, for every writer that appends once per token (a state
    change, a publish, a kept `log` event). Raises valkey's own errors."""

    def __init__(self, client: Valkey, *, maxlen: int) -> None:
        self._script = client.register_script(APPEND_ONCE)
        self._maxlen = maxlen

    async def __call__(
        self, job: JobRef, index: str, token: str, data: bytes, ttl_seconds: int, *, stream: bool
    ) -> Any:
        """Appends `data` unless `token` is in the job's `index` hash; the entry id either
        way. The index expires after `ttl_seconds`, and so does the stream when `stream`."""
        args: list[bytes | str | int] = [token, data, self._maxlen, ttl_seconds, int(stream)]
        return await self._script(keys=[job.key(EVENTS), job.key(index)], args=args)


_CURSOR = re.compile(r"^(\d{1,20})-(\d{1,20})$")
MAX_STREAM_PART = 2**64 - 1


def stream_key(job: JobRef) -> str:
    """The job's event stream (`sb:{<client>/<job_id>}:events`)."""
    return job.key(EVENTS)


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


def decode(cursor: str, fields: dict[bytes, bytes]) -> events_pb2.JobEvent:
    event = events_pb2.JobEvent.FromString(fields[FIELD])
    event.cursor = cursor
    return event


def translated(error: Exception) -> Exception:
    """The hub's failure as watchers report it."""
    if isinstance(error, valkey_errors.ConnectionError | valkey_errors.TimeoutError):
        return EventLogUnavailable("the event log is unavailable; retry later")
    return error


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
