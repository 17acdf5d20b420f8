"""Chat sessions in Valkey: the worker's chat activities load and append, the server's
GetChatSession reads the transcript.

A session belongs to one client; its keys share one hash slot, `sb:chat:{<client>/<session>}:`
- `window`: a list of the session's last k messages (serialized ChatTurn), what the model is
  given before the next user message. It expires after a TTL of inactivity, refreshed on every
  load and append: an abandoned conversation's memory goes away on its own.
- `transcript`: a stream without TTL, one entry per message (fields role, content,
  create_time, job), oldest first: the durable record that GetChatSession returns. A stream
  rather than a list: field-structured entries that tools can read, and ids that order the
  entries and can page through a long session. Valkey keeps it with the append-only file on.
- `turns`: a hash job → transcript id of the job's first message. It makes `append_turn`
  idempotent: the script appends nothing for a job already recorded, so a retried activity
  (whose first attempt did append but was not acknowledged) never adds a turn twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from google.protobuf import timestamp_pb2
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import jobs_pb2

from ..shared.errors import ChatStoreUnavailable

ChatTurn = jobs_pb2.ChatTurn
DEFAULT_WINDOW = 10
DEFAULT_TTL_SECONDS = 30 * 60
_PAGE = 500

# KEYS: window, transcript, turns. ARGV: job name, k, ttl, then for each message its
# serialized ChatTurn, role, content and create_time. Returns the first message's entry id.
_APPEND = """
local first = redis.call('HGET', KEYS[3], ARGV[1])
if first then return first end
for i = 4, #ARGV, 4 do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  local id = redis.call('XADD', KEYS[2], '*', 'role', ARGV[i + 1], 'content', ARGV[i + 2],
    'create_time', ARGV[i + 3], 'job', ARGV[1])
  first = first or id
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], first)
return first
"""


def _key(client_id: str, session_id: str, part: str) -> str:
    return f"sb:chat:{{{client_id}/{session_id}}}:{part}"


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (valkey_errors.ConnectionError, valkey_errors.TimeoutError) as e:
        raise ChatStoreUnavailable("the chat session store is unavailable; retry later") from e


class ChatSessions:
    """Windows and transcripts of chat sessions, through one injected Valkey client."""

    def __init__(
        self,
        client: Valkey,
        *,
        window: int = DEFAULT_WINDOW,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
    ) -> None:
        if window < 1 or ttl_seconds < 1:
            raise ValueError("a chat window needs at least one message and a positive TTL")
        self._client = client
        self._window = window
        self._ttl = ttl_seconds
        self._append = client.register_script(_APPEND)

    async def window(self, client_id: str, session_id: str) -> list[ChatTurn]:
        """The session's last k messages, oldest first; touching it restarts its TTL."""
        key = _key(client_id, session_id, "window")
        with _reachable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.lrange(key, -self._window, -1)
                pipe.expire(key, self._ttl)
                stored, _ = await pipe.execute()
        return [ChatTurn.FromString(raw) for raw in stored]

    async def append(self, client_id: str, session_id: str, turns: Sequence[ChatTurn]) -> str:
        """Appends one job's messages to the window and the transcript, once per job (all
        `turns` must carry the same job); returns the transcript id of the first."""
        if not turns or len({t.job for t in turns}) != 1:
            raise ValueError("append takes the messages of exactly one job")
        args: list[bytes | str | int] = [turns[0].job, self._window, self._ttl]
        for turn in turns:
            stamp = turn.create_time.ToJsonString() if turn.HasField("create_time") else ""
            args += [turn.SerializeToString(), turn.role, turn.content, stamp]
        keys = [_key(client_id, session_id, part) for part in ("window", "transcript", "turns")]
        with _reachable():
            first = await self._append(keys=keys, args=args)
        return first.decode() if isinstance(first, bytes) else str(first)

    async def transcript(self, client_id: str, session_id: str) -> list[ChatTurn]:
        """Every message of the session, oldest first; empty for an unknown session."""
        key = _key(client_id, session_id, "transcript")
        turns: list[ChatTurn] = []
        after = "-"
        while True:
            with _reachable():
                entries = await self._client.xrange(key, min=after, count=_PAGE)
            turns += [_turn(fields) for _, fields in entries]
            if len(entries) < _PAGE:
                return turns
            after = "(" + _text(entries[-1][0])


def _turn(fields: dict[bytes, bytes]) -> ChatTurn:
    turn = ChatTurn(
        role=fields[b"role"].decode(),
        content=fields[b"content"].decode(),
        job=fields[b"job"].decode(),
    )
    if stamp := fields.get(b"create_time"):
        turn.create_time.CopyFrom(_timestamp(stamp.decode()))
    return turn


def _timestamp(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
