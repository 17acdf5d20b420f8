"""A job's life through the real planner, worker, Temporal and Valkey (fake inference)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from temporalio.client import Client
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2
from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.jobstates import TERMINAL_STATE_NAMES as TERMINAL_STATES
from switchboard.planner.flows.failures import failure_status

from .fake_inference import FakeInference
from .support import (
    WAIT_S,
    Planner,
    eventually,
    reason,
    running_planner,
    running_worker,
    states,
    tokens,
)

Job = jobs_pb2.Job


@pytest.mark.asyncio
async def test_job_runs_to_succeeded_with_result_and_full_event_log(planner: Planner) -> None:
    job = await planner.create(prompt="hello brave new world")
    assert job.state == Job.QUEUED

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert "".join(tokens(seen)) == "hello brave new world"
    assert [e.token.index for e in seen if e.HasField("token")] == [0, 1, 2, 3]
    assert all(e.cursor and e.job == job.name for e in seen)
    assert seen[-1].state_changed.state == "SUCCEEDED"
    done = await planner.get(job.name)
    assert done.state == Job.SUCCEEDED
    assert done.result.generate.text == "hello brave new world"
    assert done.result.generate.finish_reason == inference_pb2.FINISH_REASON_STOP
    assert done.result.generate.usage.completion_tokens == 4
    assert await planner.result(job.name) == done.result


@pytest.mark.asyncio
async def test_failing_generation_ends_failed_with_the_reason(planner: Planner) -> None:
    job = await planner.create(model="fail")

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "FAILED"]
    assert SwitchboardError.from_status(seen[-1].state_changed.error).reason == "FAKE_MODEL_FAILED"
    failed = await planner.get(job.name)
    assert failed.state == Job.FAILED
    error = SwitchboardError.from_status(failed.error)
    assert (error.reason, error.code) == ("FAKE_MODEL_FAILED", grpc.StatusCode.FAILED_PRECONDITION)
    assert len(planner.fake.starts) == 1  # not retryable: one attempt only
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await planner.result(job.name)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(caught.value) == "JOB_FAILED"
    assert "the fake model failed" in (caught.value.details() or "")


@pytest.mark.asyncio
async def test_cancel_during_generation_ends_cancelled_once(planner: Planner) -> None:
    job = await planner.create(model="slow")
    job_id = job.name.removeprefix("jobs/")
    request = jobs_pb2.WatchJobRequest(name=job.name)
    seen = []
    async with asyncio.timeout(WAIT_S):
        async for event in planner.stub.WatchJob(request, metadata=planner.md()):
            seen.append(event)
            if len(tokens(seen)) == 3:
                cancelling = await planner.cancel(job.name)
                assert cancelling.state == Job.CANCELLING

    assert states(seen) == ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"]
    assert planner.fake.cancels == [job_id]
    stored = await planner.stored(job.name)
    terminal = [e for e in stored if e.state_changed.state in {"SUCCEEDED", "FAILED", "CANCELLED"}]
    assert len(terminal) == 1
    assert stored[-1] == terminal[0]  # no token was logged after the end

    async def shown_cancelled() -> bool:
        return (await planner.get(job.name)).state == Job.CANCELLED

    # The state shows just after its event is stored (the events-before-state order).
    await eventually(shown_cancelled)
    assert (await planner.cancel(job.name)).state == Job.CANCELLED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await planner.result(job.name)
    assert reason(caught.value) == "JOB_CANCELLED"


@pytest.mark.asyncio
async def test_broken_stream_is_retried_and_tokens_restart(planner: Planner) -> None:
    job = await planner.create(model="flaky", prompt="one two three")

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    progress = [e.progress for e in seen if e.HasField("progress")]
    assert len(progress) == 1 and "attempt 2" in progress[0].message
    after_retry = seen[[e.HasField("progress") for e in seen].index(True) + 1 :]
    assert "".join(tokens(after_retry)) == "one two three"
    assert len(planner.fake.starts) == 2
    done = await planner.get(job.name)
    assert done.result.generate.text == "one two three"


@pytest.mark.asyncio
async def test_job_cancelled_before_any_worker_ran_it_ends_cancelled_once(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    fake, address = inference
    queue = f"test-{uuid.uuid4().hex}"
    async with running_planner(temporal_client, valkey_client, fake, queue) as planner:
        job = await planner.create()
        assert (await planner.cancel(job.name)).state == Job.CANCELLING

        async with running_worker(temporal_client, valkey_client, address, queue):
            seen = await planner.watch(job.name)

        assert states(seen)[0] == "QUEUED" and states(seen)[-1] == "CANCELLED"
        assert "SUCCEEDED" not in states(seen)
        stored = states(await planner.stored(job.name))
        assert [s for s in stored if s in TERMINAL_STATES] == ["CANCELLED"]
        assert fake.starts == []  # nothing was generated for a cancelled job


@pytest.mark.asyncio
async def test_the_result_event_comes_just_before_succeeded(planner: Planner) -> None:
    job = await planner.create(prompt="the result is logged")

    seen = await planner.watch(job.name)

    assert [e.WhichOneof("payload") for e in seen[-2:]] == ["result", "state_changed"]
    assert seen[-1].state_changed.state == "SUCCEEDED"
    assert seen[-2].result == (await planner.get(job.name)).result
    assert seen[-2].result.generate.text == "the result is logged"
    assert sum(e.HasField("result") for e in seen) == 1


@pytest.mark.asyncio
async def test_a_state_get_job_shows_is_already_in_the_event_log(planner: Planner) -> None:
    """Polls GetJob as fast as it answers: the moment it shows a state (the running
    workflow's query, then the memo), that state's event must be stored already."""
    for model in ("echo", "fail", "echo"):
        job = await planner.create(model=model, prompt="a b c")
        shown: set[str] = set()
        async with asyncio.timeout(WAIT_S):
            while True:
                state = Job.State.Name((await planner.get(job.name)).state)
                if state not in shown:
                    shown.add(state)
                    assert state in states(await planner.stored(job.name)), state
                if state in TERMINAL_STATES:
                    break
        assert shown & TERMINAL_STATES


def _activity_error(cause: BaseException) -> ActivityError:
    error = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="generate",
        activity_id="2",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("cause", "expected_reason", "expected_code"),
    [
        (
            ApplicationError("no such model", "NOT_FOUND", type="MODEL_NOT_FOUND"),
            "MODEL_NOT_FOUND",
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            ApplicationError("boom", type="ValueError"),  # a stray exception's class name
            "GENERATION_FAILED",
            grpc.StatusCode.INTERNAL,
        ),
        (
            TimeoutError("timed out", type=TimeoutType.HEARTBEAT, last_heartbeat_details=[]),
            "GENERATION_TIMED_OUT",
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ),
    ],
)
def test_a_failed_job_keeps_a_status_with_a_stable_reason(
    cause: BaseException, expected_reason: str, expected_code: grpc.StatusCode
) -> None:
    error = SwitchboardError.from_status(failure_status(_activity_error(cause)))
    assert (error.reason, error.code) == (expected_reason, expected_code)
