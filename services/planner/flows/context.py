"""What a pipeline may do with its job: the `JobContext` protocol JobWorkflow implements.

The pipelines (chat, documents, stages) take a JobContext and never import the workflow
class: inside the sandbox that module may be another copy of it, and a pipeline needs only
these few operations. Everything here is deterministic workflow code.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, NoReturn, Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from google.rpc import status_pb2

    from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
    from switchboard.api.planner.v1 import tasks_pb2
    from switchboard.common.jobref import JobRef

StageStatus = pipelines_pb2.StageResult.Status


class JobContext(Protocol):
    """One running job, as its pipeline sees it."""

    @property
    def ref(self) -> JobRef:
        """The job's identity (client and id), from the workflow id."""

    @property
    def job(self) -> jobs_pb2.Job:
        """The job as shown; a pipeline sets its `result.<kind>`."""

    async def stream_generation(
        self, task: tasks_pb2.GenerationTask, budget: timedelta | None = None
    ) -> pipelines_pb2.GenerateOutput:
        """One generation whose tokens go to the job's log, tagged with `task.stage`."""

    async def embed(
        self, request: pipelines_pb2.EmbedInput, *, budget: timedelta | None = None
    ) -> pipelines_pb2.EmbedOutput:
        """One `embed` activity; `budget` bounds it, retries included."""

    async def cancellable(self, handle: workflow.ActivityHandle[Any]) -> Any:
        """Awaits an activity that must have stopped before the job ends (a cancel of the
        job says CANCELLING, then waits for the activity to confirm)."""

    async def publish(self, event: events_pb2.JobEvent) -> None:
        """Appends an event to the job's log."""

    async def progress(
        self,
        stage: str,
        status: StageStatus.ValueType,
        message: str = "",
        fraction: float = 0.0,
    ) -> None:
        """A Progress event of one stage, or of the whole job (`stage` empty)."""

    async def cancelling(self) -> None:
        """Says CANCELLING, once however many parts of the job see the cancel."""

    def halt(self, task: asyncio.Task[Any]) -> None:
        """Stops one of the pipeline's own tasks without cancelling the job."""

    def fail(self, status: status_pb2.Status) -> NoReturn:
        """Ends the job FAILED with this status."""

    def failure_status(self, err: ActivityError) -> status_pb2.Status:
        """The status of a failed activity, with its reason as ErrorInfo."""
