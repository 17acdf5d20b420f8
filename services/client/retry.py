"""When the client calls again by itself: bounded, and only where that cannot do harm.

A unary call refused with QUEUE_FULL or CIRCUIT_OPEN was not carried out, so calling it again
after the peer's `RetryInfo` delay is safe. A watch that lost its connection resumes after
the last cursor it delivered, so resuming it loses and repeats nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from .errors import CallFailed

# Reasons whose error says "not done; ask again after RetryInfo's delay".
RETRY_INFO_REASONS = frozenset({"QUEUE_FULL", "CIRCUIT_OPEN"})
# Codes of a lost connection or a peer going away: a watch resumes from its cursor.
RESUMABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # Calls in all (the first one included) for a refused unary call or a watch's reconnects
    # in a row without an event between them.
    max_attempts: int = 5
    # The wait when the peer gave no RetryInfo; doubled per attempt up to max_delay.
    base_delay: float = 0.2
    # A RetryInfo longer than this is cut to it; a client should not sleep for minutes.
    max_delay: float = 10.0

    def retry_delay(self, error: CallFailed, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1` of a refused unary call, or None."""
        if error.reason not in RETRY_INFO_REASONS or attempt >= self.max_attempts:
            return None
        asked = error.retry_delay
        return min(asked if asked is not None else self._backoff(attempt), self.max_delay)

    def resume_delay(self, error: CallFailed, attempt: int) -> float | None:
        """Seconds to wait before reopening a broken watch, or None to give up."""
        if attempt >= self.max_attempts:
            return None
        if error.code in RESUMABLE_CODES:
            return self._backoff(attempt)
        return self.retry_delay(error, attempt)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.base_delay * 2 ** (attempt - 1), self.max_delay))
