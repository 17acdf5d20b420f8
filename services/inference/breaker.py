"""A circuit breaker per backend model: pure logic over an injectable clock.

CLOSED counts the outcomes of recent calls in a rolling window (the last `window_calls`
calls, none older than `window_s`). Once it holds at least `min_calls` outcomes and the
failed share reaches `failure_ratio`, the breaker OPENs: calls are refused without reaching
the backend. After `open_s` (or earlier, by `probe_now()`) it is HALF_OPEN and lets exactly
one probe call through; the probe's success CLOSEs it (with an empty window), its failure
OPENs it again.

Every admitted call holds a `Permit` and reports one outcome. Outcomes of calls admitted
before the last transition are stale and ignored: a burst of slow failures that started
while CLOSED must not re-open a breaker that a probe has just closed.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


class State(enum.Enum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


Listener = Callable[[str, State, State], None]


@dataclass(frozen=True)
class BreakerConfig:
    window_calls: int = 20
    window_s: float = 60.0
    failure_ratio: float = 0.5
    min_calls: int = 5
    open_s: float = 30.0


class Permit:
    """One admitted call. The first report counts; later ones are no-ops."""

    def __init__(self, breaker: Breaker, epoch: int, probe: bool) -> None:
        self._breaker = breaker
        self._epoch = epoch
        self.probe = probe
        self.reported = False

    def success(self) -> None:
        self._report(True)

    def failure(self) -> None:
        self._report(False)

    def ignore(self) -> None:
        """The call ended without saying anything about the backend (a cancel, bad input)."""
        self._report(None)

    def _report(self, ok: bool | None) -> None:
        if not self.reported:
            self.reported = True
            self._breaker._record(self._epoch, self.probe, ok)


class Breaker:
    def __init__(
        self,
        name: str,
        config: BreakerConfig = BreakerConfig(),
        *,
        clock: Clock = time.monotonic,
        listener: Listener | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        self._listener = listener
        self._state = State.CLOSED
        self._epoch = 0
        self._opened_at = 0.0
        self._probing = False
        self._window: deque[tuple[float, bool]] = deque(maxlen=config.window_calls)
        self._last_success = float("-inf")

    @property
    def state(self) -> State:
        """The state now; OPEN turns HALF_OPEN here, when its cool-down is seen to be over."""
        if self._state is State.OPEN and self.retry_after() == 0:
            self._move(State.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until a probe may go through; 0 unless OPEN."""
        if self._state is not State.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.open_s - self._clock())

    def available(self) -> bool:
        """Whether `acquire()` would admit a call now; changes nothing but the lazy state."""
        state = self.state
        return state is State.CLOSED or (state is State.HALF_OPEN and not self._probing)

    def acquire(self) -> Permit | None:
        """A permit for one call, or None when the breaker refuses it."""
        state = self.state
        if state is State.CLOSED:
            return Permit(self, self._epoch, probe=False)
        if state is State.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit(self, self._epoch, probe=True)
        return None

    def probe_now(self) -> bool:
        """Ends an OPEN breaker's cool-down at once: HALF_OPEN, the next call is the one probe
        that decides. For when something outside the traffic (the canary) has just seen the
        backend answer again, so a restarted backend is not refused for the rest of `open_s`.
        Whether it did; a CLOSED or HALF_OPEN breaker stays as it is."""
        if self.state is not State.OPEN:
            return False
        self._move(State.HALF_OPEN)
        return True

    def succeeded_within(self, seconds: float) -> bool:
        """Whether any call succeeded in the last `seconds`, stale ones included."""
        return self._clock() - self._last_success <= seconds

    def failures(self) -> tuple[int, int]:
        """(failed, total) outcomes in the window now."""
        self._prune()
        return sum(1 for _, ok in self._window if not ok), len(self._window)

    def _record(self, epoch: int, probe: bool, ok: bool | None) -> None:
        if ok:
            self._last_success = self._clock()
        if epoch != self._epoch:
            return
        if probe:
            self._probing = False
            if ok is not None:
                self._move(State.CLOSED if ok else State.OPEN)
            return
        if ok is None or self._state is not State.CLOSED:
            return
        self._window.append((self._clock(), ok))
        failed, total = self.failures()
        if total >= self.config.min_calls and failed >= self.config.failure_ratio * total:
            self._move(State.OPEN)

    def _prune(self) -> None:
        oldest = self._clock() - self.config.window_s
        while self._window and self._window[0][0] < oldest:
            self._window.popleft()

    def _move(self, to: State) -> None:
        before = self._state
        self._state = to
        self._epoch += 1
        self._probing = False
        if to is State.OPEN:
            self._opened_at = self._clock()
        if to is State.CLOSED:
            self._window.clear()
        if self._listener is not None:
            self._listener(self.name, before, to)
