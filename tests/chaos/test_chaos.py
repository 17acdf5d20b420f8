"""Every process of the stack SIGKILLed in turn under mixed load; afterwards every accepted
job is accounted for: exactly one terminal state (SUCCEEDED: each outage here is far shorter
than the outage horizon, so no fault may fail a job), a stored log with one terminal event,
no repeated ids and contiguous token indexes, and followers that saw every stored event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import httpx
import pytest

from . import accounting, faults, load, sse
from .accounting import Account
from .conftest import ChaosStack
from .faults import Fault

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(540)]

# In the order issue 9 names them; each kill comes with its own wave of jobs.
FAULTS = (
    "worker", "inference", "triton", "planner", "edge", "edge-2",
    "valkey", "temporal", "chroma", "envoy",
)  # fmt: skip
# The whole scenario's budget (the stack's start comes before it, within the test timeout):
# waves of load and kills, then time for every job to end, then the reads of every log.
SCENARIO_SECONDS = 390.0
# After the last fault, how long the jobs have to end; then they count as stuck. Longer
# than the slowest designed recovery: an activity without a heartbeat (embed: 2 minutes
# start-to-close) whose worker died is retried only when that timeout fires.
SETTLE_SECONDS = 150.0
READ_SECONDS = 40.0
# Triton reloads every model (SmolLM2, MiniLM, PP-OCR) after a restart.
RECOVERY_SECONDS = {"triton": 120.0}
DEFAULT_RECOVERY_SECONDS = 60.0
# A create is retried (same id) this long; longer than any restart above.
CREATE_SECONDS = 120.0
# How long a wave waits for one of its generations to stream before the kill.
IN_FLIGHT_SECONDS = 15.0
# After a fault, how long its wave may take to end before the next fault.
WAVE_SECONDS = 20.0
STORED_READ_SECONDS = 20.0


def test_every_accepted_job_outlives_each_process_killed(
    chaos_stack: ChaosStack, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts, done = asyncio.run(_chaos(chaos_stack))
    report = accounting.table(accounts, done)
    with capsys.disabled():
        print(f"\nchaos accounting ({len(accounts)} jobs, {len(done)} faults)\n{report}")
        print(f"follower streams cut by: {accounting.drops(accounts)}")
    not_back = {f.process: f.not_ready for f in done if not f.recovered}
    assert not not_back, f"not restarted (see {chaos_stack.state_dir}/logs): {not_back}"
    skipped = FAULTS[len(done) :]
    assert not skipped, f"out of time before these kills: {skipped}"
    bad = accounting.failures(accounts, done)
    assert not bad, f"jobs with problems (logs in {chaos_stack.state_dir}/logs):\n{bad}"


async def _chaos(stack: ChaosStack) -> tuple[list[Account], list[Fault]]:
    run = f"c{secrets.token_hex(3)}"
    end = time.monotonic() + SCENARIO_SECONDS
    waves_end = end - SETTLE_SECONDS - READ_SECONDS
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=stack.public, limits=limits) as client:
        accounts: list[Account] = []
        drivers: list[asyncio.Task[None]] = []
        done: list[Fault] = []
        try:
            for wave, process in enumerate(FAULTS):
                if time.monotonic() > waves_end:
                    break  # the test names the kills it could not make
                batch = [
                    Account(spec, load.Created(), load.Followed())
                    for spec in load.mixed_wave(run, wave, process, stack.keys)
                ]
                accounts += batch
                give_up_at = time.monotonic() + CREATE_SECONDS
                drivers += [asyncio.create_task(_drive(client, a, give_up_at)) for a in batch]
                await _until_streaming(batch, _soonest(IN_FLIGHT_SECONDS, waves_end))
                fault = await _inject(stack, process, accounts, end - READ_SECONDS)
                done.append(fault)
                if not fault.recovered:
                    break  # the rest would measure a broken stack, not the next fault
                # Mostly one fault per job, so the table says which fault did what; a job
                # still running after this goes on into the next fault.
                await _until_ended(batch, _soonest(WAVE_SECONDS, waves_end))
            await _settle(client, accounts, drivers, _soonest(SETTLE_SECONDS, end - READ_SECONDS))
        finally:
            for task in drivers:
                task.cancel()
            await asyncio.gather(*drivers, return_exceptions=True)
        await _read_stored(client, accounts, _soonest(READ_SECONDS, end))
    return [accounting.check(a) for a in accounts], done


def _soonest(seconds: float, deadline: float) -> float:
    """`seconds` from now, but no later than `deadline` (time.monotonic)."""
    return min(time.monotonic() + seconds, deadline)


async def _inject(
    stack: ChaosStack, process: str, accounts: list[Account], deadline: float
) -> Fault:
    """Kills `process` and waits (until `deadline` at most) for the stack to be whole again."""
    before = faults.restart_counts(stack.state_dir)
    fault = faults.kill(stack.state_dir, process)
    fault.in_flight = sum(a.created.accepted and a.followed.terminal is None for a in accounts)
    within = min(
        RECOVERY_SECONDS.get(process, DEFAULT_RECOVERY_SECONDS), deadline - time.monotonic()
    )
    return await faults.await_recovery(stack.state_dir, fault, before, within)


async def _drive(client: httpx.AsyncClient, account: Account, give_up_at: float) -> None:
    account.started_at = time.monotonic()
    account.created = await load.create(client, account.spec, give_up_at)
    if account.created.accepted:
        await load.follow(client, account.spec.job_id, account.spec.api_key, account.followed)


async def _until_streaming(batch: list[Account], deadline: float) -> None:
    """Until one generation of the wave has streamed a token, so the kill finds work running."""
    while time.monotonic() < deadline:
        for account in batch:
            if account.spec.pipeline == "generate" and any(
                e.type == "token" for e in account.followed.events
            ):
                return
        await asyncio.sleep(0.1)


async def _until_ended(batch: list[Account], deadline: float) -> None:
    while time.monotonic() < deadline:
        # attempts == 0: the create has not returned yet (_drive replaces `created` then).
        if not any(
            a.created.attempts == 0 or (a.created.accepted and a.followed.terminal is None)
            for a in batch
        ):
            return
        await asyncio.sleep(0.2)


async def _settle(
    client: httpx.AsyncClient,
    accounts: list[Account],
    drivers: list[asyncio.Task[None]],
    deadline: float,
) -> None:
    """Until every follower has seen its job end and GET shows every job ended, or the
    deadline; the last GET of each job is what the accounting judges."""
    if drivers:
        await asyncio.wait(drivers, timeout=max(0.0, deadline - time.monotonic()))
    pending = list(accounts)
    while True:
        states = await asyncio.gather(*(load.job_state(client, a.spec) for a in pending))
        for account, job in zip(pending, states, strict=True):
            if job is not None:
                account.job = job
        # Not found ({}) after its create gave up: never accepted, nothing to wait for.
        pending = [
            a
            for a in pending
            if a.state not in sse.TERMINAL and (a.created.accepted or a.job != {})
        ]
        if not pending or time.monotonic() > deadline:
            return
        await asyncio.sleep(1.0)


async def _read_stored(client: httpx.AsyncClient, accounts: list[Account], deadline: float) -> None:
    """Each ended job's log read afresh from its start (no Last-Event-ID); a log not read to
    its end by the deadline is judged unreadable (stored.terminal stays None)."""
    gate = asyncio.Semaphore(8)

    async def read(account: Account) -> None:
        account.stored = stored = load.Followed()
        async with gate:
            seconds = min(STORED_READ_SECONDS, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    load.follow(client, account.spec.job_id, account.spec.api_key, stored),
                    max(seconds, 0.1),
                )

    await asyncio.gather(*(read(a) for a in accounts if a.state in sse.TERMINAL))
