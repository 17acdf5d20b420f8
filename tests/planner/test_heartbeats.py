"""The worker's HeartbeatInterceptor, on the real Temporal dev server: an activity scheduled
with a heartbeat timeout stays alive while it waits on something slow without heartbeating
itself (an OCR call, a Chroma upsert), and one without a heartbeat timeout is left alone."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.worker import Interceptor, UnsandboxedWorkflowRunner, Worker

from switchboard.planner.work.heartbeats import HeartbeatInterceptor

pytestmark = pytest.mark.asyncio

HEARTBEAT_TIMEOUT = timedelta(seconds=1)
SILENT_SECONDS = 3.0


@activity.defn(name="silent")
async def silent() -> int:
    """Longer than the heartbeat timeout, with no heartbeat of its own."""
    await asyncio.sleep(SILENT_SECONDS)
    return activity.info().attempt


@workflow.defn(name="SilentWorkflow")
class SilentWorkflow:
    @workflow.run
    async def run(self) -> int:
        attempt: int = await workflow.execute_activity(
            silent,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        return attempt


async def _run(client: Client, interceptors: list[Interceptor]) -> int:
    queue = f"heartbeats-{uuid.uuid4().hex}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[SilentWorkflow],
        activities=[silent],
        interceptors=interceptors,
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_heartbeat_throttle_interval=timedelta(milliseconds=200),
        default_heartbeat_throttle_interval=timedelta(milliseconds=200),
    ):
        result: int = await client.execute_workflow(
            SilentWorkflow.run, id=queue, task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )  # fmt: skip
        return result


async def test_a_silent_activity_heartbeats_through_the_interceptor(
    temporal_client: Client,
) -> None:
    assert await _run(temporal_client, [HeartbeatInterceptor(every_seconds=0.2)]) == 1


async def test_without_it_the_same_activity_times_out_on_its_heartbeat(
    temporal_client: Client,
) -> None:
    """The control: what the interceptor prevents (and what a dead worker looks like)."""
    with pytest.raises(WorkflowFailureError) as failure:
        await _run(temporal_client, [])
    cause = failure.value.cause
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, TimeoutError)
    assert cause.cause.type == TimeoutType.HEARTBEAT
