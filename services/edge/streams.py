"""Per-client cap on open streams (SSE job streams, streamed chat completions, chat sockets),
shared by every edge replica through Valkey.

Each open stream holds a slot: a member of the client's sorted set `sb:streams:<client>`,
scored by when its lease expires (Valkey's own clock, ms). Opening a stream drops the expired
members, counts the rest and, under the cap, adds its own, in one Lua step. The edge renews
the leases of the streams it holds every third of a lease, and a stream that ends, however it
ends, removes its member. A killed edge renews nothing, so its slots expire within one lease
and free themselves; the same renewal puts slots back after Valkey lost them (a restart).

When Valkey cannot answer, the stream opens anyway (fail open, like the rate limiter): the
cap protects capacity, not data. Each such stream is counted and a warning logged at most
every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from typing import Final

import prometheus_client
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from .errors import TooManyStreams

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "sb:streams:"
WARN_EVERY_SECONDS: Final = 10.0

SLOTS = prometheus_client.Counter(
    "switchboard_edge_stream_slots_total",
    "Stream openings by outcome; `unchecked` means Valkey did not answer and the stream "
    "opened without a slot.",
    ["decision"],
)
HELD = prometheus_client.Gauge(
    "switchboard_edge_stream_slots_held", "Stream slots this edge holds (and renews) now."
)

# ARGV: cap, lease ms, member. Returns {admitted (0/1), streams open after the step}.
_ACQUIRE: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[1]) then
  return {0, open}
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, open + 1}
"""
# ARGV: lease ms, members... Re-adds a member Valkey lost: the stream is still open.
_RENEW: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return #ARGV - 1
"""


class Slot:
    """One open stream's place in its client's count; `release` is idempotent."""

    def __init__(self, slots: StreamSlots | None, client: str, member: str) -> None:
        self._slots = slots
        self.client = client
        self.member = member

    @property
    def held(self) -> bool:
        return self._slots is not None

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release(self)


class StreamSlots:
    def __init__(self, valkey: Valkey | None, cap: int, lease_seconds: float) -> None:
        """`cap` 0 (or no Valkey): no cap, every stream opens."""
        self._valkey = valkey
        self._cap = cap
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._acquire = valkey.register_script(_ACQUIRE) if valkey else None
        self._renew = valkey.register_script(_RENEW) if valkey else None
        self._held: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_at = -math.inf

    async def acquire(self, client: str) -> Slot:
        """A slot for a new stream of `client`; TooManyStreams at the cap."""
        if self._acquire is None or self._cap <= 0:
            return Slot(None, client, "")
        member = uuid.uuid4().hex
        try:
            reply = await self._acquire(
                keys=[KEY_PREFIX + client], args=[self._cap, self._lease_ms, member]
            )
        except valkey_errors.ValkeyError as e:
            self._fail_open(e)
            return Slot(None, client, "")
        admitted, _ = (int(x) for x in reply)
        if not admitted:
            SLOTS.labels("refused").inc()
            raise TooManyStreams(
                f"at most {self._cap} streams and sockets may be open at once per client; "
                "close one or retry later",
                metadata={"limit": str(self._cap)},
            )
        SLOTS.labels("admitted").inc()
        self._held.setdefault(client, set()).add(member)
        HELD.inc()
        return Slot(self, client, member)

    def release(self, slot: Slot) -> None:
        """Frees `slot` now (in the background: a stream's end must not wait on Valkey)."""
        members = self._held.get(slot.client, set())
        if slot.member not in members:
            return
        members.discard(slot.member)
        if not members:
            del self._held[slot.client]
        HELD.dec()
        task = asyncio.ensure_future(self._remove(slot.client, slot.member))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remove(self, client: str, member: str) -> None:
        assert self._valkey is not None
        try:
            await self._valkey.zrem(KEY_PREFIX + client, member)
        except valkey_errors.ValkeyError as e:
            # The lease runs out by itself: the slot frees within one lease.
            log.info("stream slot left to expire", extra={"fields": {"error": type(e).__name__}})

    async def renew_forever(self) -> None:
        """Renews every held lease each third of a lease, until cancelled."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            await self.renew()

    async def renew(self) -> None:
        if self._renew is None:
            return
        for client, members in list(self._held.items()):
            try:
                await self._renew(keys=[KEY_PREFIX + client], args=[self._lease_ms, *members])
            except valkey_errors.ValkeyError as e:
                self._warn("stream slots not renewed: Valkey did not answer", e)

    async def close(self) -> None:
        """Frees every slot still held (best effort) once the streams are gone."""
        for client, members in list(self._held.items()):
            for member in list(members):
                self.release(Slot(self, client, member))
        tasks = list(self._tasks)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*tasks, return_exceptions=True)

    def _fail_open(self, error: Exception) -> None:
        SLOTS.labels("unchecked").inc()
        self._warn("stream cap unchecked: Valkey did not answer", error)

    def _warn(self, message: str, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(message, extra={"fields": {"error": type(error).__name__}})
