"""JobWorkflow: one job's durable life, QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED.

The workflow holds the job's state (query `snapshot`, and the `job` memo that listings read);
activities do all I/O. Every run ends in exactly one terminal state and publishes exactly one
terminal `state_changed` event, also when it is cancelled.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    import grpc
    from google.protobuf import timestamp_pb2

    from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
    from switchboard.api.planner.v1 import tasks_pb2
    from switchboard.common.errors import SwitchboardError

WORKFLOW = "JobWorkflow"
QUERY_SNAPSHOT = "snapshot"
MEMO_JOB = "job"
GENERATE = "generate"
GENERATE_STAGE = "generate_stage"
EMBED = "embed"
PUBLISH_EVENT = "publish_event"
DELIVER_WEBHOOK = "deliver_webhook"

State = jobs_pb2.Job.State

GENERATE_START_TO_CLOSE = timedelta(minutes=30)
GENERATE_HEARTBEAT = timedelta(seconds=10)
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
    non_retryable_error_types=["VALIDATION_FAILED", "INVALID_ARGUMENT", "MODEL_NOT_FOUND"],
)
# One Embed call: short, and safe to repeat (the inference service retries it too).
EMBED_START_TO_CLOSE = timedelta(minutes=2)
EMBED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=GENERATE_RETRY.non_retryable_error_types,
)
PUBLISH_START_TO_CLOSE = timedelta(seconds=10)
# Unlimited attempts: a job must not end without its terminal event, so an outage of the
# event log delays the job's end instead of losing the event.
PUBLISH_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=0)

# The worker's activity sets each retry's delay and the last attempt (its settings are the
# delivery schedule); this policy only backs it where an attempt timed out instead.
WEBHOOK_START_TO_CLOSE = timedelta(minutes=2)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,
    non_retryable_error_types=["WEBHOOK_DESTINATION_FORBIDDEN", "WEBHOOK_SECRET_MISSING"],
)

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*$")


@workflow.defn(name=WORKFLOW)
class JobWorkflow:
    def __init__(self) -> None:
        self._job = jobs_pb2.Job()
        self._cancel_requested = False

    @workflow.run
    async def run(self, job: jobs_pb2.Job) -> jobs_pb2.Job:
        self._job.CopyFrom(job)
        try:
            await self._transition(State.RUNNING)
            await self._run_pipeline(job.input)
            final = State.SUCCEEDED
        except asyncio.CancelledError:
            final = State.CANCELLED
        except ActivityError as err:
            final = State.CANCELLED if self._cancelled(err) else State.FAILED
            if final == State.FAILED:
                self._job.error.CopyFrom(failure_status(err))
        await self._finish(final)
        if self._job.webhook_url:
            await self._notify()
        return self._job

    async def _run_pipeline(self, job_input: pipelines_pb2.JobInput) -> None:
        kind = job_input.WhichOneof("kind")
        if kind not in ("generate", "embed"):
            raise ApplicationError(
                f"the {kind!r} pipeline is not implemented yet",
                grpc.StatusCode.UNIMPLEMENTED.name,
                type="NOT_IMPLEMENTED",
                non_retryable=True,
            )
        if job_input.HasField("embed"):
            output = await workflow.execute_activity(
                EMBED,
                job_input.embed,
                result_type=pipelines_pb2.EmbedOutput,
                start_to_close_timeout=EMBED_START_TO_CLOSE,
                retry_policy=EMBED_RETRY,
            )
            self._job.result.embed.CopyFrom(output)
        else:
            self._job.result.generate.CopyFrom(await self._generate(job_input.generate))

    @workflow.query(name=QUERY_SNAPSHOT)
    def snapshot(self) -> jobs_pb2.Job:
        return self._job

    async def _generate(self, request: pipelines_pb2.GenerateInput) -> pipelines_pb2.GenerateOutput:
        handle = workflow.start_activity(
            GENERATE,
            request,
            result_type=pipelines_pb2.GenerateOutput,
            start_to_close_timeout=GENERATE_START_TO_CLOSE,
            heartbeat_timeout=GENERATE_HEARTBEAT,
            retry_policy=GENERATE_RETRY,
            # The job is only CANCELLED once the worker has stopped generating, so no token
            # can land in the log after the terminal event.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return cast(pipelines_pb2.GenerateOutput, await self._cancellable(handle))

    async def stream_generation(
        self, task: tasks_pb2.GenerationTask, budget: timedelta | None = None
    ) -> pipelines_pb2.GenerateOutput:
        """One generation of a stage: tokens stream to the event log (tagged with the task's
        stage); a cancel of the job stops it at the backend before the job ends. `budget`
        bounds each attempt (GENERATE_START_TO_CLOSE when None)."""
        handle = workflow.start_activity(
            GENERATE_STAGE,
            task,
            result_type=pipelines_pb2.GenerateOutput,
            start_to_close_timeout=budget or GENERATE_START_TO_CLOSE,
            heartbeat_timeout=GENERATE_HEARTBEAT,
            retry_policy=GENERATE_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return cast(pipelines_pb2.GenerateOutput, await self._cancellable(handle))

    async def _cancellable(self, handle: workflow.ActivityHandle[Any]) -> Any:
        """Awaits an activity that must stop before the job ends: a cancel of the job says
        CANCELLING (once, however many activities run) and then waits for the activity to
        confirm it stopped."""
        try:
            # Shielded so that a cancel of the job reaches the except below, which says
            # CANCELLING before it asks the activity to stop.
            return await asyncio.shield(handle)
        except asyncio.CancelledError:
            if not self._cancel_requested:
                self._cancel_requested = True
                await self._transition(State.CANCELLING)
            handle.cancel()
            return await handle

    def _cancelled(self, err: ActivityError) -> bool:
        return self._cancel_requested or isinstance(err.cause, CancelledError)

    async def _finish(self, state: State.ValueType) -> None:
        # The terminal event is written whatever else is cancelled meanwhile.
        publish = asyncio.ensure_future(self._transition(state))
        while not publish.done():
            try:
                await asyncio.shield(publish)
            except asyncio.CancelledError:
                continue

    async def _notify(self) -> None:
        """Delivers the `job.completed` webhook. The job has ended already: whatever becomes of
        the delivery (or a cancel meanwhile), its state stays; a failure is only logged."""
        handle = workflow.start_activity(
            DELIVER_WEBHOOK,
            self._job,
            start_to_close_timeout=WEBHOOK_START_TO_CLOSE,
            retry_policy=WEBHOOK_RETRY,
        )
        try:
            await asyncio.shield(handle)
        except asyncio.CancelledError:
            handle.cancel()
            workflow.logger.warning("webhook delivery abandoned: the workflow was cancelled")
        except ActivityError as err:
            cause = err.cause
            why = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
            workflow.logger.warning("webhook not delivered (%s)", why)

    async def _transition(self, state: State.ValueType) -> None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(workflow.now())
        self._job.state = state
        self._job.update_time.CopyFrom(stamp)
        workflow.upsert_memo({MEMO_JOB: self._job})
        changed = events_pb2.StateChanged(state=State.Name(state))
        if state == State.FAILED:
            changed.error.CopyFrom(self._job.error)
        event = events_pb2.JobEvent(job=self._job.name, create_time=stamp, state_changed=changed)
        await workflow.execute_activity(
            PUBLISH_EVENT,
            event,
            start_to_close_timeout=PUBLISH_START_TO_CLOSE,
            retry_policy=PUBLISH_RETRY,
        )


def failure_status(err: ActivityError) -> Any:
    """The `google.rpc.Status` a FAILED job keeps, with the activity's reason as ErrorInfo."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and _REASON.match(cause.type or ""):
        code = _code(cause.details[0] if cause.details else "")
        error = SwitchboardError(cause.message, reason=cause.type, code=code)
    elif isinstance(cause, TimeoutError):
        error = SwitchboardError(
            "the generation timed out",
            reason="GENERATION_TIMED_OUT",
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
        )
    else:
        error = SwitchboardError("the generation failed", reason="GENERATION_FAILED")
    return error.to_status()


def _code(name: object) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.name == name), grpc.StatusCode.INTERNAL)
