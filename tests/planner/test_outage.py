"""Outages are waited out up to the horizon; a finished generation is never generated again;
`log` events that the event log could not take are stored once it is back."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2, inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2
from switchboard.api.planner.v1 import tasks_pb2
from switchboard.common.jobref import JobRef
from switchboard.planner import process
from switchboard.planner.shared.config import RetrySchedule
from switchboard.planner.stores import events
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work import outage
from switchboard.planner.work.activities import Activities

from . import restartable
from .fake_inference import FakeInference
from .support import serving

if TYPE_CHECKING:  # the async stub exists only in the type stubs
    Stub = inference_pb2_grpc.InferenceServiceAsyncStub
SCHEDULE = RetrySchedule(horizon_seconds=60, initial_interval_seconds=1, max_interval_seconds=15)


def _error(reason: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> ApplicationError:
    return ApplicationError("it broke", code.name, type=reason)


@pytest.mark.parametrize(
    "reason",
    ["EVENT_LOG_UNAVAILABLE", "BACKEND_UNAVAILABLE", "CIRCUIT_OPEN", "INFERENCE_STREAM_ENDED"],
)
def test_an_outage_is_retried_with_capped_backoff_until_the_horizon(reason: str) -> None:
    delays = []
    for attempt in range(1, 8):
        decided = outage.decide(_error(reason), SCHEDULE, attempt, elapsed_s=attempt * 5.0)
        assert not decided.non_retryable and decided.type == reason
        assert decided.next_retry_delay is not None
        delays.append(decided.next_retry_delay.total_seconds())
    assert delays == [1, 2, 4, 8, 15, 15, 15]


def test_past_the_horizon_the_job_fails_with_the_real_cause() -> None:
    decided = outage.decide(_error("EVENT_LOG_UNAVAILABLE"), SCHEDULE, 9, elapsed_s=61.4)
    assert decided.non_retryable and decided.type == "EVENT_LOG_UNAVAILABLE"
    assert decided.details == (
        "UNAVAILABLE",
        {"attempts": "9", "outage_seconds": "61", "horizon_seconds": "60"},
    )


def test_queue_full_is_an_outage_whatever_its_code() -> None:
    full = _error("QUEUE_FULL", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert not outage.decide(full, SCHEDULE, 10, elapsed_s=30).non_retryable


def test_other_failures_keep_a_small_budget() -> None:
    broke = _error("MODEL_BROKE", grpc.StatusCode.INTERNAL)
    assert [outage.decide(broke, SCHEDULE, n, 1.0).non_retryable for n in (1, 2, 3)] == [
        False,
        False,
        True,
    ]
    final = ApplicationError("no", "NOT_FOUND", type="MODEL_NOT_FOUND", non_retryable=True)
    assert outage.decide(final, SCHEDULE, 1, 0.0) is final


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[tuple[FakeInference, Stub]]:
    servicer = FakeInference()
    async with serving(servicer) as address:
        channel = grpc.aio.insecure_channel(address)
        yield servicer, inference_pb2_grpc.InferenceServiceStub(channel)
        await channel.close(grace=None)


def _environment(wid: str, run: str, attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    first = datetime.now(UTC) - timedelta(seconds=5)
    env.info = dataclasses.replace(
        env.info,
        workflow_id=wid,
        workflow_run_id=run,
        activity_id="7",
        attempt=attempt,
        scheduled_time=first,
        current_attempt_scheduled_time=first,
    )
    return env


def _task(prompt: str) -> tasks_pb2.GenerationTask:
    start = inference_pb2.GenerateStart(model="echo", prompt=prompt)
    return tasks_pb2.GenerationTask(stage="answer", start=start)


async def _stored(client: Valkey, wid: str) -> list[events_pb2.JobEvent]:
    entries = await client.xrange(events.stream_key(JobRef.from_workflow_id(wid)))
    return [events_pb2.JobEvent.FromString(fields[b"e"]) for _, fields in entries]


@pytest.mark.asyncio
async def test_a_retry_after_a_lost_completion_returns_the_recorded_generation(
    valkey_client: Valkey,
    fake: tuple[FakeInference, Stub],
) -> None:
    servicer, stub = fake
    activities = Activities(stub, EventLog(valkey_client))
    wid = f"client-o/j-{uuid.uuid4().hex[:12]}"
    first = await _environment(wid, "run-1", 1).run(activities.generate_stage, _task("a b c"))
    logged = await _stored(valkey_client, wid)
    assert [e.token.text for e in logged] == ["a", " b", " c"]

    # The same activity again, as Temporal retries it when its completion was lost.
    again = await _environment(wid, "run-1", 2).run(activities.generate_stage, _task("a b c"))
    assert again == first and again.text == "a b c"
    assert len(servicer.starts) == 1  # no second call to inference
    assert await _stored(valkey_client, wid) == logged  # no token, no "retrying" event

    # Another run of the same job id (the id used again after retention) generates anew.
    await _environment(wid, "run-2", 1).run(activities.generate_stage, _task("a b c"))
    assert len(servicer.starts) == 2


def _log(wid: JobRef, message: str) -> events_pb2.JobEvent:
    return events.job_event(wid, log=events_pb2.Log(level=events_pb2.Log.WARNING, message=message))


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_log_events_kept_while_valkey_is_down_are_stored_once_it_is_back(
    own_valkey: restartable.Restartable,
) -> None:
    client = process.valkey_client(f"valkey://{own_valkey.address}/0")
    try:
        log, wid = EventLog(client), JobRef("client-o", f"j-{uuid.uuid4().hex[:12]}")
        await log.append(wid, _log(wid, "before"))
        own_valkey.kill()
        assert not await log.append_log(wid, _log(wid, "attempt 1 failed"))
        assert not await log.append_log(wid, _log(wid, "attempt 2 failed"))
        assert log.kept(wid) == 2
        await own_valkey.start()  # same port, same append-only file

        # The job's next event goes out after the kept ones, each stored once.
        await log.append(wid, _log(wid, "after"))
        await log.append(wid, _log(wid, "later"))
        stored = [e.log.message for e in await _stored(client, wid.workflow_id)]
        assert stored == ["before", "attempt 1 failed", "attempt 2 failed", "after", "later"]
        assert log.kept(wid) == 0
    finally:
        await client.aclose()
