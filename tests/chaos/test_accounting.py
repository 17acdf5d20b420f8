"""The accounting finds what it must: a suite that cannot fail proves nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from . import accounting, sse
from .accounting import Account
from .faults import Fault
from .load import Created, Followed, JobSpec

SPEC = JobSpec("c1-w00-gen-a", "generate", {}, "key", "worker")


def _state(cursor: str, state: str) -> sse.Event:
    return sse.Event(cursor, "state_changed", {"stateChanged": {"state": state}})


def _token(cursor: str, index: int, text: str) -> sse.Event:
    # proto3 JSON writes int64 as a string and leaves out a zero.
    token: dict[str, Any] = {"text": text, **({"index": str(index)} if index else {})}
    return sse.Event(cursor, "token", {"token": token})


def _log(*tokens: tuple[int, str], end: str = "SUCCEEDED") -> list[sse.Event]:
    events = [_state("1-0", "QUEUED"), _state("1-1", "RUNNING")]
    events += [_token(f"2-{n}", index, text) for n, (index, text) in enumerate(tokens)]
    return [*events, _state("3-0", end)]


def _account(
    stored: list[sse.Event], seen: list[sse.Event] | None = None, text: str = "a b "
) -> Account:
    state = next(e.terminal_state for e in reversed(stored) if e.terminal_state)
    job = {"state": state, "result": {"generate": {"text": text}}}
    followed = Followed(events=list(stored if seen is None else seen), terminal=state)
    account = Account(SPEC, Created(status=202), followed, job, Followed(stored, terminal=state))
    return accounting.check(account)


def test_a_clean_job_has_no_problems() -> None:
    account = _account(_log((0, "a "), (1, "b ")))
    assert account.problems == []


def test_a_retried_attempt_may_restart_the_indexes() -> None:
    account = _account(_log((0, "a "), (0, "a "), (1, "b ")))
    assert account.problems == []
    assert account.token_restarts == 1


def test_a_finished_generation_run_again_is_a_regeneration() -> None:
    account = _account(_log((0, "a "), (1, "b "), (0, "a "), (1, "b ")))
    assert account.regenerated == 2
    assert "ran again" in account.problems[0]


def test_a_skipped_index_is_lost() -> None:
    account = _account(_log((0, "a "), (2, "b ")), text="a ")
    assert account.lost == 1
    assert any("token index 2 where 1 was due" in p for p in account.problems)


def test_the_result_must_be_the_streamed_text() -> None:
    account = _account(_log((0, "a "), (1, "b ")), text="something else")
    assert any("is not the streamed" in p for p in account.problems)


def test_a_second_terminal_event_and_a_repeated_id_are_found() -> None:
    stored = _log((0, "a "), (1, "b "))
    account = _account([*stored, _state("3-0", "FAILED")])
    assert account.duplicated == 1
    assert any("2 terminal events" in p for p in account.problems)
    assert any("repeats ids ['3-0']" in p for p in account.problems)


def test_a_follower_missing_or_repeating_an_event_is_a_mismatch() -> None:
    stored = _log((0, "a "), (1, "b "))
    missing = _account(stored, seen=[e for e in stored if e.id != "2-1"])
    assert missing.follower_mismatch and missing.lost == 1
    repeated = _account(stored, seen=[*stored[:3], stored[2], *stored[3:]])
    assert repeated.follower_mismatch and repeated.duplicated == 1


def test_a_failed_or_unanswered_job_is_a_problem() -> None:
    failed = _account(_log((0, "a "), (1, "b "), end="FAILED"))
    assert any("ended FAILED" in p for p in failed.problems)
    stuck = Account(SPEC, Created(status=202), Followed(), {"state": "RUNNING"})
    assert accounting.check(stuck).stuck
    lost_answer = Account(SPEC, Created(retried=["ConnectError"]), Followed(), {})
    assert not lost_answer.accepted
    assert accounting.check(lost_answer).problems


def test_the_table_counts_per_fault_and_pipeline() -> None:
    table = accounting.table([_account(_log((0, "a "), (1, "b ")))], [Fault("worker", 1, 2)])
    rows = {line.split("  ")[0].strip(): line.split() for line in table.splitlines()}
    assert rows["kill worker"][2:5] == ["1", "1", "0"]  # accepted, succeeded, failed
    assert rows["generate"][1:3] == ["1", "1"]


def test_sse_reader_dispatches_only_complete_events() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in ["retry: 2000", "", ": heartbeat", "", "id: 1-0", "event: token"]:
            yield line
        for line in ['data: {"a": 1}', "", "id: 1-1", 'data: {"cut": true}']:
            yield line

    async def read() -> list[sse.Event]:
        return [e async for e in sse.events(lines())]

    assert asyncio.run(read()) == [sse.Event("1-0", "token", {"a": 1})]
