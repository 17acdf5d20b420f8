"""The circuit breaker's state machine, on a fake clock (pure logic, no Triton)."""

from __future__ import annotations

import pytest

from switchboard.inference.breaker import Breaker, BreakerConfig, State

CONFIG = BreakerConfig(window_calls=20, window_s=60, failure_ratio=0.5, min_calls=5, open_s=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _breaker(clock: Clock, transitions: list[tuple[State, State]] | None = None) -> Breaker:
    log = transitions if transitions is not None else []
    return Breaker("m", CONFIG, clock=clock, listener=lambda _, a, b: log.append((a, b)))


def _calls(breaker: Breaker, outcomes: str) -> None:
    """One admitted call per letter: s succeeds, f fails, i is ignored (a cancel)."""
    for outcome in outcomes:
        permit = breaker.acquire()
        assert permit is not None, f"refused at {outcome!r}"
        {"s": permit.success, "f": permit.failure, "i": permit.ignore}[outcome]()


def _state(breaker: Breaker) -> State:
    # A call, not the property: mypy would narrow the property across the state changes.
    return breaker.state


def _open(breaker: Breaker) -> None:
    _calls(breaker, "fffff")
    assert _state(breaker) is State.OPEN


def test_opens_at_the_failure_ratio_once_enough_calls_were_seen(clock: Clock) -> None:
    breaker = _breaker(clock)

    _calls(breaker, "ffff")  # 100 % failed, but fewer than min_calls
    assert _state(breaker) is State.CLOSED
    _calls(breaker, "s")  # 4 of 5 failed
    assert _state(breaker) is State.OPEN
    assert breaker.acquire() is None
    assert breaker.retry_after() == 30


def test_stays_closed_below_the_ratio(clock: Clock) -> None:
    breaker = _breaker(clock)

    _calls(breaker, "sssssffff")  # 4 of 9
    assert _state(breaker) is State.CLOSED
    _calls(breaker, "f")  # 5 of 10: the threshold is inclusive
    assert _state(breaker) is State.OPEN


def test_ignored_outcomes_do_not_count(clock: Clock) -> None:
    breaker = _breaker(clock)

    _calls(breaker, "iiiiiiiiffff")
    assert breaker.failures() == (4, 4)
    assert _state(breaker) is State.CLOSED


def test_the_window_forgets_old_calls(clock: Clock) -> None:
    breaker = _breaker(clock)
    _calls(breaker, "ffff")

    clock.now += 61  # those four are out of the 60 s window
    _calls(breaker, "fs")

    assert breaker.failures() == (1, 2)
    assert _state(breaker) is State.CLOSED


def test_the_window_holds_the_last_n_calls(clock: Clock) -> None:
    breaker = _breaker(clock)
    _calls(breaker, "sssssff" + "s" * 20)  # the failures fell out of the 20-call window

    assert breaker.failures() == (0, 20)


def test_half_open_after_the_cool_down_lets_one_probe_through(clock: Clock) -> None:
    breaker = _breaker(clock)
    _open(breaker)

    clock.now += 29.9
    assert _state(breaker) is State.OPEN and not breaker.available()
    assert breaker.retry_after() == pytest.approx(0.1)
    clock.now += 0.1
    assert _state(breaker) is State.HALF_OPEN
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert breaker.acquire() is None  # only one probe at a time
    assert not breaker.available()


def test_a_successful_probe_closes_it_with_a_clean_window(clock: Clock) -> None:
    transitions: list[tuple[State, State]] = []
    breaker = _breaker(clock, transitions)
    _open(breaker)
    clock.now += 30

    probe = breaker.acquire()
    assert probe is not None
    probe.success()

    assert _state(breaker) is State.CLOSED
    assert breaker.failures() == (0, 0)
    assert transitions == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_probe_reopens_it_for_another_cool_down(clock: Clock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30

    probe = breaker.acquire()
    assert probe is not None
    probe.failure()

    assert _state(breaker) is State.OPEN
    assert breaker.retry_after() == 30
    clock.now += 30
    assert _state(breaker) is State.HALF_OPEN


def test_an_ignored_probe_lets_another_probe_go(clock: Clock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 30

    first = breaker.acquire()
    assert first is not None
    first.ignore()  # e.g. the client cancelled before the backend said anything

    assert _state(breaker) is State.HALF_OPEN
    assert breaker.acquire() is not None


def test_outcomes_from_before_a_transition_are_stale(clock: Clock) -> None:
    breaker = _breaker(clock)
    slow = [breaker.acquire() for _ in range(10)]  # admitted while closed, still running
    _open(breaker)
    clock.now += 30
    probe = breaker.acquire()
    assert probe is not None
    probe.success()

    for permit in slow:
        assert permit is not None
        permit.failure()

    assert _state(breaker) is State.CLOSED
    assert breaker.failures() == (0, 0)


def test_only_the_first_report_of_a_permit_counts(clock: Clock) -> None:
    breaker = _breaker(clock)
    for _ in range(5):
        permit = breaker.acquire()
        assert permit is not None
        permit.success()
        permit.failure()

    assert breaker.failures() == (0, 5)


def test_probe_now_ends_the_cool_down_of_an_open_breaker(clock: Clock) -> None:
    transitions: list[tuple[State, State]] = []
    breaker = _breaker(clock, transitions)
    slow = breaker.acquire()  # admitted while closed, still running
    _open(breaker)
    clock.now += 1  # 29 s of the cool-down left

    assert breaker.probe_now()
    assert _state(breaker) is State.HALF_OPEN and breaker.retry_after() == 0
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert breaker.acquire() is None  # still one probe at a time
    assert slow is not None
    slow.failure()  # stale: admitted before the transition
    probe.success()

    assert _state(breaker) is State.CLOSED
    assert transitions == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_after_probe_now_a_failed_probe_reopens_it_for_a_whole_cool_down(clock: Clock) -> None:
    breaker = _breaker(clock)
    _open(breaker)
    clock.now += 1
    breaker.probe_now()

    probe = breaker.acquire()
    assert probe is not None
    probe.failure()

    assert _state(breaker) is State.OPEN
    assert breaker.retry_after() == 30


def test_probe_now_leaves_a_closed_or_half_open_breaker_alone(clock: Clock) -> None:
    transitions: list[tuple[State, State]] = []
    breaker = _breaker(clock, transitions)
    assert not breaker.probe_now()
    assert _state(breaker) is State.CLOSED

    _open(breaker)
    clock.now += 30
    probe = breaker.acquire()  # HALF_OPEN, its probe running
    assert probe is not None
    assert not breaker.probe_now()
    assert breaker.acquire() is None  # no second probe

    assert transitions == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN)]
