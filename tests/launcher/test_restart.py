"""The restart rules alone: backoff doubles to its cap, resets after a long ready spell,
and too many deaths within the window stop restarts until forgiven."""

from __future__ import annotations

from switchboard.launcher.restart import RestartPolicy, Restarts

POLICY = RestartPolicy(
    first_backoff_s=0.5,
    max_backoff_s=4.0,
    reset_after_s=60.0,
    crashloop_deaths=5,
    crashloop_window_s=120.0,
)


def test_backoff_doubles_up_to_its_cap() -> None:
    restarts = Restarts(RestartPolicy(first_backoff_s=0.5, max_backoff_s=4.0, crashloop_deaths=99))
    delays = [restarts.died(now=float(t), ready_for=1.0) for t in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_long_ready_spell_starts_over_at_the_first_backoff() -> None:
    restarts = Restarts(POLICY)
    assert [restarts.died(0.0, 1.0), restarts.died(10.0, 1.0)] == [0.5, 1.0]
    assert restarts.died(100.0, ready_for=60.0) == 0.5
    assert restarts.died(101.0, ready_for=0.0) == 1.0


def test_more_deaths_than_the_limit_within_the_window_is_a_crash_loop() -> None:
    restarts = Restarts(POLICY)
    assert all(restarts.died(float(t), 0.0) is not None for t in range(5))
    assert restarts.died(5.0, 0.0) is None


def test_deaths_older_than_the_window_do_not_count() -> None:
    restarts = Restarts(POLICY)
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        assert restarts.died(t, 0.0) is not None
    # 121 s later the first two have left the window: 4 deaths in it, not 6.
    assert restarts.died(121.5, 0.0) is not None


def test_forgiving_clears_the_history_and_the_backoff() -> None:
    restarts = Restarts(POLICY)
    for t in range(6):
        restarts.died(float(t), 0.0)
    assert restarts.died(6.0, 0.0) is None
    restarts.forgive()
    assert restarts.died(7.0, 0.0) == 0.5
