"""JobWorkflow: one job's durable life, QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED.

The workflow holds the job's state (query `snapshot`, and the `job` memo that listings read);
activities do all I/O. Every run ends in exactly one terminal state and publishes exactly one
terminal `state_changed` event, also when it is cancelled.

Since the `events-before-state` patch a state change is stored in the event log before the
workflow shows it (query and memo), and a SUCCEEDED job logs its `result` event just before
its SUCCEEDED event; histories recorded before the patch replay the old order. Since the
`local-events` patch those appends run as local activities, within the workflow task that
decides them (`publishing.py`). The webhook is delivered by `webhookflow.py`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, NoReturn, cast

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    import grpc
    from google.protobuf import timestamp_pb2
    from google.rpc import status_pb2

    from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
    from switchboard.api.planner.v1 import tasks_pb2
    from switchboard.common import jobstates
    from switchboard.common.jobref import JobRef

    from ..shared import errors
    from ..shared.tasks import (
        GENERATE,
        GENERATE_STAGE,
        MEMO_JOB,
        QUERY_SNAPSHOT,
        WORKFLOW,
    )

from ..shared import redact
from . import chatflow, documentflow, embedding, failures, stages, webhookflow
from .policies import (
    GENERATE_HEARTBEAT,
    GENERATE_RETRY,
    GENERATE_START_TO_CLOSE,
)
from .publishing import append, stamp, through_cancel

State = jobs_pb2.Job.State
StageStatus = pipelines_pb2.StageResult.Status
# Stores each event before the state it announces shows, and logs the result event.
EVENTS_BEFORE_STATE = "events-before-state"


class JobFailure(Exception):
    """Raised inside the workflow by a pipeline: the job ends FAILED with this status."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


@workflow.defn(name=WORKFLOW)
class JobWorkflow:
    """One job. Pipelines run as `await <module>.run_<kind>(workflow, input)` and set
    `workflow.job.result.<kind>`; they see it as a `context.JobContext` and use these:

    - `stream_generation(task, budget)`: one generation whose tokens go to the log, tagged
      with `task.stage`; a cancel of the job stops it at the backend before the job ends.
    - `embed(request, budget=None)`: one `embed` activity.
    - `publish(event)`: appends an event to the job's log (job name and time filled in).
    - `progress(stage, status, message="", fraction=0.0)`: a Progress event of one stage
      (or of the whole job, `stage` empty and status unset).
    - `halt(task)`: stops one of the pipeline's own tasks (a stage) without cancelling the job.
    - `cancellable(handle)`: awaits an activity that must stop before the job ends.
    - `ref`: the job's identity (JobRef), from the workflow id.
    - `fail(status)`: ends the job FAILED with that `google.rpc.Status`;
      `failure_status(err)` is the status of a failed activity.
    A cancel of the job arrives as `asyncio.CancelledError`; a pipeline that runs several
    activities at once stops them all (awaiting each) and lets it propagate.
    """

    def __init__(self) -> None:
        self._job = jobs_pb2.Job()
        self._cancel_requested = False
        self._halted: set[asyncio.Task[Any]] = set()

    @property
    def ref(self) -> JobRef:
        return JobRef.from_workflow_id(workflow.info().workflow_id)

    @property
    def job(self) -> jobs_pb2.Job:
        return self._job

    @workflow.run
    async def run(self, job: jobs_pb2.Job) -> jobs_pb2.Job:
        # The job as shown (memo, query, result) leaves out a document; `job` keeps it.
        self._job.CopyFrom(redact.stored_view(job))
        try:
            await self._transition(State.RUNNING)
            await self._run_pipeline(job.input)
            final = State.SUCCEEDED
        except asyncio.CancelledError:
            final = State.CANCELLED
        except ActivityError as err:
            final = State.CANCELLED if self._cancelled(err) else State.FAILED
            if final == State.FAILED:
                self._job.error.CopyFrom(failures.failure_status(err))
        except JobFailure as failure:
            final = State.FAILED
            self._job.error.CopyFrom(failure.status)
        if self._job.webhook_url and workflow.patched(webhookflow.WEBHOOK_DELIVERY_STATUS):
            # Shown with the terminal state: the job ended and its notice is on its way.
            self._job.webhook_delivery.state = events_pb2.WebhookDelivery.PENDING
        await self._finish(final)
        if self._job.HasField("webhook_delivery"):
            await webhookflow.deliver(self._job)
        elif self._job.webhook_url:
            await webhookflow.notify(self._job)
        return self._job

    async def _run_pipeline(self, job_input: pipelines_pb2.JobInput) -> None:
        kind = job_input.WhichOneof("kind")
        if kind == "embed":
            self._job.result.embed.CopyFrom(await self.embed(job_input.embed))
        elif kind == "generate":
            self._job.result.generate.CopyFrom(await self._generate(job_input.generate))
        elif kind == "fan_out":
            await stages.run_fan_out(self, job_input.fan_out)
        elif kind == "graph":
            await stages.run_graph(self, job_input.graph)
        elif kind == "chat":
            await chatflow.run_chat(self, job_input.chat)
        elif kind == "ingest_document":
            await documentflow.run_ingest_document(self, job_input.ingest_document)
        elif kind == "search":
            await documentflow.run_search(self, job_input.search)
        elif kind == "answer":
            await documentflow.run_answer(self, job_input.answer)
        else:
            raise ApplicationError(
                f"the {kind!r} pipeline is not implemented yet",
                grpc.StatusCode.UNIMPLEMENTED.name,
                type=errors.NOT_IMPLEMENTED,
                non_retryable=True,
            )

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
        return cast(pipelines_pb2.GenerateOutput, await self.cancellable(handle))

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
        return cast(pipelines_pb2.GenerateOutput, await self.cancellable(handle))

    async def embed(
        self, request: pipelines_pb2.EmbedInput, *, budget: timedelta | None = None
    ) -> pipelines_pb2.EmbedOutput:
        """One Embed call (`embedding.py`); `budget` bounds it, retries included."""
        return await embedding.embed(request, budget)

    async def publish(self, event: events_pb2.JobEvent) -> None:
        """Appends an event to the job's log, its job name and time filled in when unset. A
        cancel arriving meanwhile waits for the append and is raised after it."""
        if not event.job:
            event.job = self._job.name
        if not event.HasField("create_time"):
            event.create_time.CopyFrom(stamp())
        if await through_cancel(append(event)):
            raise asyncio.CancelledError

    async def progress(
        self,
        stage: str,
        status: StageStatus.ValueType,
        message: str = "",
        fraction: float = 0.0,
    ) -> None:
        """A Progress event of one stage, or of the whole job (`stage` empty, status unset)."""
        progress = events_pb2.Progress(
            stage=stage, status=status, message=message, fraction=fraction
        )
        await self.publish(events_pb2.JobEvent(progress=progress))

    def fail(self, status: status_pb2.Status) -> NoReturn:
        """Ends the job FAILED with this status. (Raised here, so that the exception is the
        class `run` catches also for a pipeline module the sandbox imported differently.)"""
        raise JobFailure(status)

    @staticmethod
    def failure_status(err: ActivityError) -> status_pb2.Status:
        """The status of a failed activity, with its reason as ErrorInfo."""
        return failures.failure_status(err)

    def halt(self, task: asyncio.Task[Any]) -> None:
        """Cancels one of the workflow's own tasks (a stage's work) without cancelling the job:
        a generation in it stops at the backend, and the job does not turn CANCELLING."""
        self._halted.add(task)
        task.cancel()

    async def cancelling(self) -> None:
        """Says CANCELLING, once however many parts of the job see the cancel."""
        if not self._cancel_requested:
            self._cancel_requested = True
            await self._transition(State.CANCELLING)

    async def cancellable(self, handle: workflow.ActivityHandle[Any]) -> Any:
        """Awaits an activity that must stop before the job ends: a cancel of the job says
        CANCELLING (once, however many activities run) and then waits for the activity to
        confirm it stopped. A halted task stops its activity the same way, quietly."""
        try:
            # Shielded so that a cancel of the job reaches the except below, which says
            # CANCELLING before it asks the activity to stop.
            return await asyncio.shield(handle)
        except asyncio.CancelledError:
            if asyncio.current_task() not in self._halted:
                await self.cancelling()
            handle.cancel()
            return await handle

    def _cancelled(self, err: ActivityError) -> bool:
        return self._cancel_requested or isinstance(err.cause, CancelledError)

    async def _finish(self, state: State.ValueType) -> None:
        # The terminal event is written whatever else is cancelled meanwhile.
        await through_cancel(self._end(state))

    async def _end(self, state: State.ValueType) -> None:
        if state == State.SUCCEEDED and workflow.patched(EVENTS_BEFORE_STATE):
            await self.publish(events_pb2.JobEvent(result=self._job.result))
        await self._transition(state)

    async def _transition(self, state: State.ValueType) -> None:
        now = stamp()
        changed = jobstates.state_changed(state, self._job.error if state == State.FAILED else None)
        event = events_pb2.JobEvent(job=self._job.name, create_time=now, state_changed=changed)
        if not workflow.patched(EVENTS_BEFORE_STATE):
            self._show(state, now)
            await append(event)
            return
        # Stored first: whoever sees the state (GetJob) finds its event in the log.
        interrupted = await through_cancel(append(event))
        self._show(state, now)
        if interrupted:
            raise asyncio.CancelledError

    def _show(self, state: State.ValueType, stamp: timestamp_pb2.Timestamp) -> None:
        """The new state as the `snapshot` query and the `job` memo show it."""
        self._job.state = state
        self._job.update_time.CopyFrom(stamp)
        workflow.upsert_memo({MEMO_JOB: self._job})
