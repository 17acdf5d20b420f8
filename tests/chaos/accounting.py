"""Accounting for every accepted job after the faults: its end, its stored event log, and what
its follower received, as one row per job and a table per fault and per pipeline."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import sse
from .faults import Fault
from .load import Created, Followed, JobSpec

# Pipelines whose result text is the stream of their tokens.
_STREAMED_RESULT = {"generate": "generate", "chat": "chat"}


@dataclass
class Account:
    spec: JobSpec
    created: Created
    followed: Followed
    # The job as GET showed it last ({}: not found; None: no answer).
    job: dict[str, Any] | None = None
    # The stored log, read afresh from its start once the job had ended.
    stored: Followed | None = None
    lost: int = 0
    duplicated: int = 0
    regenerated: int = 0
    # Token streams that started again at index 0 (a generation attempt cut and retried).
    token_restarts: int = 0
    follower_mismatch: bool = False
    problems: list[str] = field(default_factory=list)
    # time.monotonic() when the create was first sent.
    started_at: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.created.accepted or bool(self.job)

    @property
    def state(self) -> str:
        return str(self.job.get("state", "UNKNOWN")) if self.job else "UNKNOWN"

    @property
    def stuck(self) -> bool:
        return self.accepted and self.state not in sse.TERMINAL

    @property
    def bad(self) -> bool:
        return bool(self.problems)


def check(account: Account) -> Account:
    """Fills in the verdict; every finding also becomes a line in `problems`."""
    if not account.accepted:
        if account.created.refused:
            account.problems.append(f"create refused: {account.created.refused}")
        else:
            account.problems.append(f"create never answered: {account.created.retried[-5:]}")
        return account
    if account.job == {}:
        account.lost += 1
        account.problems.append("accepted, but GET finds no such job")
        return account
    if account.stuck:
        account.problems.append(f"stuck in {account.state}")
        return account
    if account.state != "SUCCEEDED":
        error = account.job.get("error") if account.job else None
        account.problems.append(f"ended {account.state}: {error}")
    if account.stored is None or account.stored.terminal is None:
        account.problems.append("the stored log could not be read to its end")
        return account
    _check_log(account, account.stored.events)
    _check_follower(account, account.stored.events, account.followed)
    return account


def _check_log(account: Account, events: Sequence[sse.Event]) -> None:
    ids = [e.id for e in events]
    if not all(ids):
        account.problems.append("stored event without an id")
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        account.duplicated += len(duplicates)
        account.problems.append(f"stored log repeats ids {duplicates[:5]}")
    if [_cursor(i) for i in ids] != sorted(_cursor(i) for i in ids):
        account.problems.append("stored ids are not in order")
    gaps = [e for e in events if e.type == "gap"]
    if gaps:
        account.lost += len(gaps)
        account.problems.append(f"stored log has a gap: {gaps[0].data}")
    terminals = [e.terminal_state for e in events if e.terminal_state]
    if len(terminals) != 1:
        account.problems.append(f"{len(terminals)} terminal events: {terminals}")
    elif terminals[0] != account.state:
        account.problems.append(f"terminal event {terminals[0]} but GET says {account.state}")
    states = Counter(
        e.data["stateChanged"].get("state") for e in events if e.type == "state_changed"
    )
    repeated = {s: n for s, n in states.items() if n > 1}
    if repeated:
        account.duplicated += sum(n - 1 for n in repeated.values())
        account.problems.append(f"states logged more than once: {repeated}")
    _check_tokens(account, events)


def _check_tokens(account: Account, events: Sequence[sse.Event]) -> None:
    """Per stage, token indexes run 0, 1, 2, ... and may start again at 0 only (a retried
    attempt, announced by a progress event); the last run is the result. A finished run
    that is generated again is a regeneration."""
    runs: dict[str, list[list[str]]] = defaultdict(list)
    for event in events:
        if event.type != "token":
            continue
        token = event.data.get("token", {})
        stage, index = str(token.get("stage", "")), int(token.get("index", 0))
        stage_runs = runs[stage]
        if index == 0:
            stage_runs.append([])
        elif not stage_runs or index != len(stage_runs[-1]):
            due = len(stage_runs[-1]) if stage_runs else 0
            account.problems.append(f"stage {stage!r}: token index {index} where {due} was due")
            account.lost += 1
            continue
        stage_runs[-1].append(str(token.get("text", "")))
    account.token_restarts = sum(len(stage_runs) - 1 for stage_runs in runs.values())
    for stage, stage_runs in runs.items():
        final = "".join(stage_runs[-1])
        again = [run for run in stage_runs[:-1] if run and "".join(run) == final]
        if again:
            account.regenerated += sum(len(run) for run in again)
            account.problems.append(
                f"stage {stage!r}: a finished generation ran again ({len(again)} more times)"
            )
    kind = _STREAMED_RESULT.get(account.spec.pipeline)
    if kind and account.state == "SUCCEEDED" and account.job and len(runs) == 1:
        text = account.job.get("result", {}).get(kind, {}).get("text", "")
        streamed = "".join(next(iter(runs.values()))[-1])
        if text != streamed:
            account.problems.append(f"result {text!r} is not the streamed {streamed!r}")


def _check_follower(account: Account, stored: Sequence[sse.Event], followed: Followed) -> None:
    stored_ids = [e.id for e in stored]
    seen_ids = [e.id for e in followed.events]
    if seen_ids == stored_ids and not followed.anomalies:
        by_id = {e.id: e for e in stored}
        changed = [e.id for e in followed.events if by_id[e.id] != e]
        if changed:
            account.follower_mismatch = True
            account.problems.append(f"follower got other contents for {changed[:5]}")
        return
    account.follower_mismatch = True
    missing = [i for i in stored_ids if i not in set(seen_ids)]
    extra = [i for i in seen_ids if i not in set(stored_ids)]
    repeats = [i for i, n in Counter(seen_ids).items() if n > 1]
    account.lost += len(missing)
    account.duplicated += len(repeats)
    account.problems.append(
        f"follower saw {len(seen_ids)} events of {len(stored_ids)} stored: missing "
        f"{missing[:5]}, repeated {repeats[:5]}, not stored {extra[:5]}, "
        f"anomalies {followed.anomalies[:3]}, drops {followed.drops[-3:]}"
    )


def _cursor(cursor: str) -> tuple[int, int]:
    ms, _, seq = cursor.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (-1, -1)


COLUMNS = (
    "accepted", "succeeded", "failed", "cancelled", "stuck", "refused",
    "lost ev", "dup ev", "regen tok", "follower !=", "resumes", "tok restarts", "max s",
)  # fmt: skip


def _row(accounts: Iterable[Account]) -> list[int]:
    rows = list(accounts)
    return [
        sum(a.accepted for a in rows),
        sum(a.state == "SUCCEEDED" for a in rows),
        sum(a.state == "FAILED" for a in rows),
        sum(a.state == "CANCELLED" for a in rows),
        sum(a.stuck for a in rows),
        sum(not a.accepted for a in rows),
        sum(a.lost for a in rows),
        sum(a.duplicated for a in rows),
        sum(a.regenerated for a in rows),
        sum(a.follower_mismatch for a in rows),
        # Reconnections with Last-Event-ID: proof that the followers were cut and resumed.
        sum(max(0, a.followed.connects - 1) for a in rows),
        # Generations cut mid-stream and run again: proof that a kill hit streaming work.
        sum(a.token_restarts for a in rows),
    ]


def _slowest(accounts: Iterable[Account]) -> str:
    """The longest time from create to the terminal event a follower saw, in seconds."""
    took = [a.followed.ended_at - a.started_at for a in accounts if a.followed.ended_at]
    return f"{max(took):.0f}" if took else "-"


def table(accounts: Sequence[Account], faults: Sequence[Fault]) -> str:
    """Per fault (with the restarts seen while it recovered), per pipeline, and in total."""
    head = ["", *COLUMNS, "jobs running at the kill; restarts seen (back after)"]
    lines: list[list[str]] = [head]
    for fault in faults:
        rows = [a for a in accounts if a.spec.fault == fault.process]
        took = f"{fault.seconds:.1f}s" if fault.recovered else f"NOT BACK {fault.not_ready}"
        cells = [f"kill {fault.process}", *map(str, _row(rows)), _slowest(rows)]
        lines.append([*cells, f"{fault.in_flight}; {fault.restarts_seen()} ({took})"])
    lines.append([])
    for pipeline in sorted({a.spec.pipeline for a in accounts}):
        rows = [a for a in accounts if a.spec.pipeline == pipeline]
        lines.append([pipeline, *map(str, _row(rows)), _slowest(rows), ""])
    lines.append([])
    lines.append(["total", *map(str, _row(accounts)), _slowest(accounts), ""])
    widths = [max(len(line[i]) for line in lines if line) for i in range(len(head) - 1)]
    out = []
    for line in lines:
        if not line:
            out.append("-" * (sum(widths) + 2 * len(widths)))
            continue
        cells = [
            line[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=False)),
        ]
        out.append("  ".join([*cells[: len(widths)], line[-1]]))
    return "\n".join(out)


def drops(accounts: Sequence[Account]) -> str:
    """Why follower streams ended before their job did, by cause, most frequent first."""
    causes = Counter(" ".join(d.split()[:2])[:60] for a in accounts for d in a.followed.drops)
    return ", ".join(f"{cause} x{n}" for cause, n in causes.most_common()) or "none"


def lived_through(account: Account, faults: Sequence[Fault]) -> list[str]:
    """The kills that came while the job ran (from its create to its terminal event)."""
    end = account.followed.ended_at or float("inf")
    return [f.process for f in faults if account.started_at <= f.killed_at <= end]


def failures(accounts: Sequence[Account], faults: Sequence[Fault]) -> str:
    return "\n".join(
        f"{a.spec.job_id} ({a.spec.pipeline}; killed while it ran: "
        f"{', '.join(lived_through(a, faults)) or 'none'}): {'; '.join(a.problems)}"
        for a in accounts
        if a.bad
    )
