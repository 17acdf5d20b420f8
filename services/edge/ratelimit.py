"""Per-client rate limits shared by every edge replica: one atomic GCRA step in Valkey.

GCRA (the generic cell rate algorithm, a token bucket kept as one number) stores per client
the theoretical arrival time (TAT) of its next request. A request is admitted when
`max(TAT, now) + interval - burst * interval <= now`, and then moves TAT on by one interval,
so a client that was idle may send `burst` requests at once and then one per interval. The
Lua script reads the clock of Valkey itself (TIME), so replicas with skewed clocks still
share one bucket; the key expires when the bucket is full again.

Answers carry `RateLimit-Limit` (the burst), `RateLimit-Remaining` and `RateLimit-Reset`
(seconds until the bucket is full again), the three fields of the IETF httpapi draft as
most APIs send them; a refusal adds `Retry-After` (whole seconds, at least 1).

When Valkey cannot answer, requests are admitted (fail open): the limit protects capacity,
not data, the API keys are still checked, and a limiter outage must not become an API
outage. Each such request is counted and a warning logged at most every few seconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import prometheus_client
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

log = logging.getLogger(__name__)

KEY_PREFIX: Final = "sb:ratelimit:"
WARN_EVERY_SECONDS: Final = 10.0
MICROS: Final = 1_000_000

DECISIONS = prometheus_client.Counter(
    "switchboard_edge_rate_limit_decisions_total",
    "Rate-limit checks by outcome; `unchecked` means Valkey did not answer and the request "
    "was let through.",
    ["decision"],
)

# Returns {admitted (0/1), remaining, µs until the bucket is full, µs until a retry may pass}.
_GCRA: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
"""


@dataclass(frozen=True)
class Limit:
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not 0 < self.per_second <= MICROS or self.burst < 1:
            raise ValueError(f"a rate limit needs 0 < per_second <= 1e6 and burst >= 1: {self}")


@dataclass(frozen=True)
class Limits:
    """The default limit (None: unlimited) and per-client overrides (None: unlimited)."""

    default: Limit | None
    clients: Mapping[str, Limit | None] = field(default_factory=dict)

    def for_client(self, client: str) -> Limit | None:
        return self.clients.get(client, self.default)

    @classmethod
    def parse(cls, per_second: float, burst: int, overrides: str) -> Limits:
        """`overrides` is `client=rate:burst,...`; a rate of 0 means unlimited."""
        clients: dict[str, Limit | None] = {}
        for pair in filter(None, (p.strip() for p in overrides.split(","))):
            client, _, spec = pair.partition("=")
            rate, sep, size = spec.partition(":")
            try:
                clients[client.strip()] = _limit(float(rate), int(size) if sep else burst)
            except ValueError as e:
                raise ValueError(f"rate limit override {pair!r} is not client=rate:burst") from e
        return cls(_limit(per_second, burst), clients)


def _limit(per_second: float, burst: int) -> Limit | None:
    return None if per_second == 0 else Limit(per_second, burst)


@dataclass(frozen=True)
class Decision:
    admitted: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


class RateLimiter:
    def __init__(self, valkey: Valkey, limits: Limits) -> None:
        self._limits = limits
        self._script = valkey.register_script(_GCRA)
        self._warned_at = -math.inf

    async def admit(self, client: str) -> Decision | None:
        """This request's decision; None when the client is unlimited or Valkey is away."""
        limit = self._limits.for_client(client)
        if limit is None:
            return None
        interval = max(1, round(MICROS / limit.per_second))
        try:
            reply = await self._script(keys=[KEY_PREFIX + client], args=[interval, limit.burst])
        except valkey_errors.ValkeyError as e:
            self._fail_open(e)
            return None
        admitted, remaining, full_in, retry_in = (int(x) for x in reply)
        decision = Decision(
            admitted=bool(admitted),
            limit=limit.burst,
            remaining=max(0, min(remaining, limit.burst)),
            reset_seconds=math.ceil(full_in / MICROS),
            retry_after_seconds=max(1, math.ceil(retry_in / MICROS)),
        )
        DECISIONS.labels("admitted" if decision.admitted else "limited").inc()
        return decision

    def _fail_open(self, error: Exception) -> None:
        DECISIONS.labels("unchecked").inc()
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            fields = {"error": type(error).__name__}
            log.warning("rate limits unchecked: Valkey did not answer", extra={"fields": fields})
