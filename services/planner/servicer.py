"""JobService: the caller's jobs, run as Temporal workflows, watched through their event logs.

The caller is the client id in `x-client-id` metadata (set by the edge after it checked the
API key). Every lookup goes through that id, so another client's job is NOT_FOUND.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import grpc

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.common import telemetry
from switchboard.common.errors import SwitchboardError
from switchboard.common.validation import validate

from . import ids, paging
from .errors import (
    ClientIdMissing,
    JobAlreadyExists,
    JobCancelled,
    JobFailed,
    JobNotFinished,
    JobNotFound,
    PipelineInputMismatch,
)
from .events import EventLog, now, parse_cursor
from .store import JobStore

log = logging.getLogger(__name__)

Job = jobs_pb2.Job
Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE_SIZE = 20


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, store: JobStore, events: EventLog) -> None:
        self._store = store
        self._events = events

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> Job:
        client_id = caller(context)
        validate(request)
        check_pipeline(request.job)
        job = _new_job(client_id, request.job_id or ids.new_job_id(), request.job)
        job_id = ids.job_id_of(job.name)
        telemetry.job_id_var.set(job_id)
        existing = await self._existing(client_id, job)
        if existing is not None:
            return existing
        # QUEUED is logged before the workflow exists, so it is always the log's first event.
        await self._events.append_state(ids.workflow_id(client_id, job_id), _queued(job))
        if await self._store.start(job):
            log.info("job created", extra={"fields": {"pipeline": job.pipeline}})
            return job
        existing = await self._existing(client_id, job)  # a concurrent create won the race
        if existing is None:
            raise JobAlreadyExists(f"job id {job_id!r} was used before")
        return existing

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> Job:
        client_id, job_id = self._target(request, context)
        return await self._store.get(client_id, job_id)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        client_id = caller(context)
        validate(request)
        token = paging.decode(client_id, request.page_token)
        jobs, following = await self._store.list(
            client_id, request.page_size or DEFAULT_PAGE_SIZE, token
        )
        return jobs_pb2.ListJobsResponse(
            jobs=jobs, next_page_token=paging.encode(client_id, following)
        )

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> Job:
        client_id, job_id = self._target(request, context)
        return await self._store.cancel(client_id, job_id)

    async def GetJobResult(
        self, request: jobs_pb2.GetJobResultRequest, context: Context
    ) -> pipelines_pb2.JobResult:
        client_id, job_id = self._target(request, context)
        job = await self._store.get(client_id, job_id)
        if job.state == Job.SUCCEEDED:
            return job.result
        if job.state == Job.FAILED:
            cause = SwitchboardError.from_status(job.error)
            raise JobFailed(
                f"job failed: {job.error.message}", metadata={"job_error_reason": cause.reason}
            )
        if job.state == Job.CANCELLED:
            raise JobCancelled("job was cancelled")
        raise JobNotFinished(f"job is {Job.State.Name(job.state)}; its result is not ready")

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[events_pb2.JobEvent]:
        client_id, job_id = self._target(request, context)
        parse_cursor(request.after_cursor)  # a malformed cursor fails before any lookup
        job, closed = await self._store.describe(client_id, job_id)
        wid = ids.workflow_id(client_id, job_id)
        end = await self._events.terminal_cursor(wid)
        if end is not None and parse_cursor(request.after_cursor) >= parse_cursor(end):
            return  # the caller has seen the end already (an SSE client reconnecting)
        if end is None and closed:
            # The log expired, or the workflow was stopped from outside: only the end is known.
            yield _final(job)
            return
        async for event in self._events.watch(wid, request.after_cursor):
            yield event

    async def ListPipelines(
        self, request: jobs_pb2.ListPipelinesRequest, context: Context
    ) -> jobs_pb2.ListPipelinesResponse:
        raise SwitchboardError(
            "ListPipelines is not implemented yet",
            reason="NOT_IMPLEMENTED",
            code=grpc.StatusCode.UNIMPLEMENTED,
        )

    async def GetChatSession(
        self, request: jobs_pb2.GetChatSessionRequest, context: Context
    ) -> jobs_pb2.ChatSession:
        raise SwitchboardError(
            "GetChatSession is not implemented yet",
            reason="NOT_IMPLEMENTED",
            code=grpc.StatusCode.UNIMPLEMENTED,
        )

    def _target(self, request: Any, context: Context) -> tuple[str, str]:
        """(client_id, job_id) of a request naming one job; validates it on the way."""
        client_id = caller(context)
        validate(request)
        job_id = ids.job_id_of(request.name)
        telemetry.job_id_var.set(job_id)
        return client_id, job_id

    async def _existing(self, client_id: str, job: Job) -> Job | None:
        """The job already under this id: returned for an identical request, else a conflict."""
        job_id = ids.job_id_of(job.name)
        try:
            found = await self._store.find(client_id, job_id)
        except JobNotFound:
            return None
        if (found.pipeline, found.input, dict(found.labels), found.webhook_url) != (
            job.pipeline,
            job.input,
            dict(job.labels),
            job.webhook_url,
        ):
            raise JobAlreadyExists(
                f"job {job_id!r} exists with a different request", metadata={"job_id": job_id}
            )
        return await self._store.get(client_id, job_id)


def caller(context: Context) -> str:
    """The client id the edge (or an internal caller) put in `x-client-id`."""
    # At run time the server gives a sequence of (key, value) pairs, not the stubs' Mapping.
    pairs = cast(Sequence[tuple[str, str | bytes]], context.invocation_metadata() or ())
    for key, value in pairs:
        if key == "x-client-id" and isinstance(value, str) and value:
            client_id = ids.check_client_id(value)
            telemetry.client_id_var.set(client_id)
            return client_id
    raise ClientIdMissing("x-client-id metadata is required")


def check_pipeline(job: Job) -> None:
    """A pipeline runs inputs of its own kind only (the input's oneof is named after it)."""
    kind = job.input.WhichOneof("kind")
    if kind != job.pipeline:
        raise PipelineInputMismatch(
            f"pipeline {job.pipeline!r} does not take a {kind!r} input",
            metadata={"pipeline": job.pipeline, "input": str(kind)},
        )


def _new_job(client_id: str, job_id: str, spec: Job) -> Job:
    stamp = now()
    return Job(
        name=ids.job_name(job_id),
        state=Job.QUEUED,
        pipeline=spec.pipeline,
        input=spec.input,
        labels=spec.labels,
        webhook_url=spec.webhook_url,
        client=client_id,
        create_time=stamp,
        update_time=stamp,
    )


def _queued(job: Job) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        job=job.name,
        create_time=job.create_time,
        state_changed=events_pb2.StateChanged(state=Job.State.Name(Job.QUEUED)),
    )


def _final(job: Job) -> events_pb2.JobEvent:
    changed = events_pb2.StateChanged(state=Job.State.Name(job.state))
    if job.HasField("error"):
        changed.error.CopyFrom(job.error)
    return events_pb2.JobEvent(job=job.name, create_time=job.update_time, state_changed=changed)
