"""When a process that died is started again: exponential backoff and a crash-loop limit.

The rules of Kubernetes' restartPolicy and systemd's Restart=on-failure with
StartLimitBurst, as pure logic over the times the supervisor hands in: each death waits
twice as long as the one before (up to a cap), a process that stayed ready for a while
starts over at the first delay, and one that dies too often within a window is left
down (`crashloop`) until someone restarts it by hand.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # Ready this long before dying: the next restart waits the first backoff again.
    reset_after_s: float = 60.0
    # More deaths than this within the window: crashloop, no more automatic restarts.
    crashloop_deaths: int = 5
    crashloop_window_s: float = 120.0


class Restarts:
    """One process's recent deaths and the delay its next restart waits."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._deaths: deque[float] = deque()
        self._next = policy.first_backoff_s

    def died(self, now: float, ready_for: float) -> float | None:
        """The delay before starting again, or None when the process is crash-looping.

        `now` is a monotonic time, `ready_for` how long the process was ready before it
        died (0 if it never became ready)."""
        policy = self.policy
        if ready_for >= policy.reset_after_s:
            self._next = policy.first_backoff_s
        self._deaths.append(now)
        while self._deaths[0] <= now - policy.crashloop_window_s:
            self._deaths.popleft()
        if len(self._deaths) > policy.crashloop_deaths:
            return None
        delay, self._next = self._next, min(self._next * 2, policy.max_backoff_s)
        return delay

    def forgive(self) -> None:
        """A restart by hand: the history no longer counts toward the limit."""
        self._deaths.clear()
        self._next = self.policy.first_backoff_s
