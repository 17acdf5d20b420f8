"""JobService: the caller's jobs, run as Temporal workflows, watched through their event logs.

The caller is the client id in `x-client-id` metadata (set by the edge after it checked the
API key), believed only beside a valid `x-switchboard-internal` token: the edge and other
internal callers hold one, and Envoy strips both headers from public requests. Every lookup
goes through that id, so another client's job is NOT_FOUND.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import grpc

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.common import jobstates, telemetry
from switchboard.common.errors import InvalidArgument, SwitchboardError
from switchboard.common.jobref import JobRef
from switchboard.common.jobstates import TERMINAL_STATES
from switchboard.common.settings import Secret
from switchboard.common.validation import validate

from ..shared import graphs, ids, redact
from ..shared.errors import (
    ChatSessionNotFound,
    ClientIdInvalid,
    ClientIdMissing,
    IdempotencyKeyReused,
    JobAlreadyExists,
    JobCancelled,
    JobFailed,
    JobNotFinished,
    JobNotFound,
    PipelineInputMismatch,
)
from ..shared.tasks import chunk_sizes
from ..stores.chats import ChatSessions
from ..stores.events import EventLog, now, parse_cursor
from . import catalog, paging, settle
from .store import JobStore, fingerprint

log = logging.getLogger(__name__)

Job = jobs_pb2.Job
Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE_SIZE = 20


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        store: JobStore,
        events: EventLog,
        *,
        internal_tokens: Sequence[Secret] = (),
        sessions: ChatSessions | None = None,
    ) -> None:
        self._store = store
        self._events = events
        # Chat transcripts live in the event log's Valkey unless told otherwise.
        self._sessions = sessions or ChatSessions(events.client)
        # Without tokens no caller is trusted: every call naming a client is refused.
        self._trusted = tuple(internal_tokens)

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> Job:
        client_id = caller(context, self._trusted)
        validate(request)
        check_pipeline(request.job)
        ref = JobRef(client_id, _job_id(request))
        job = _new_job(ref, request.job)
        telemetry.job_id_var.set(ref.id)
        # A caller-chosen id (or key) may name a job that exists; a new random id cannot (80
        # bits), so its create skips the lookup, one Temporal call; a clash would still be
        # caught by the start below, which refuses a duplicate workflow id.
        if request.job_id or request.idempotency_key:
            existing = await self._existing(ref, job, request)
            if existing is not None:
                return existing
        # QUEUED is logged before the workflow exists, so it is always the log's first event.
        await self._events.append_state(ref, _queued(job))
        if await self._store.start(ref, job):
            log.info("job created", extra={"fields": {"pipeline": job.pipeline}})
            # As GetJob and a repeated create show it: an ingest job's document is not echoed.
            return redact.stored_view(job)
        existing = await self._existing(ref, job, request)  # a concurrent create won
        if existing is None:
            raise _reused(request, ref.id, "was used before")
        return existing

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> Job:
        ref = self._target(request, context)
        job = await self._store.find(ref)
        if job.state in TERMINAL_STATES:
            return job
        # The workflow logs its terminal event before its state shows it, so a client that
        # saw the end in the event stream (an SSE follower, the edge's `Prefer: wait`) must
        # not read an older state here. Once the log holds the end, the job is settled from
        # the log and the memo; the snapshot query is for jobs still running (sent after the
        # end, it would wait for the workflow's last task or replay its history on a worker).
        end = await self._events.terminal_cursor(ref)
        if end is not None:
            return await settle.settled(self._store, self._events, ref, job, end)
        return await self._store.live(ref, job)

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        client_id = caller(context, self._trusted)
        validate(request)
        token = paging.decode(client_id, request.page_token)
        jobs, following = await self._store.list(
            client_id, request.page_size or DEFAULT_PAGE_SIZE, token
        )
        return jobs_pb2.ListJobsResponse(
            jobs=jobs, next_page_token=paging.encode(client_id, following)
        )

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> Job:
        return await self._store.cancel(self._target(request, context))

    async def GetJobResult(
        self, request: jobs_pb2.GetJobResultRequest, context: Context
    ) -> pipelines_pb2.JobResult:
        job = await self._store.get(self._target(request, context))
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
        ref = self._target(request, context)
        parse_cursor(request.after_cursor)  # a malformed cursor fails before any lookup
        job, closed = await self._store.describe(ref)
        end = await self._events.terminal_cursor(ref)
        # A caller past the end (an SSE client reconnecting) gets what was logged after the
        # terminal event (the webhook's outcome), if anything, and the watch ends.
        if end is None and closed:
            # The log expired, or the workflow was stopped from outside: only the end is known.
            yield _final(job)
            return
        async for event in self._events.watch(ref, request.after_cursor):
            yield event

    async def ListPipelines(
        self, request: jobs_pb2.ListPipelinesRequest, context: Context
    ) -> jobs_pb2.ListPipelinesResponse:
        validate(request)  # the catalog is the same for every caller
        return catalog.listing()

    async def GetChatSession(
        self, request: jobs_pb2.GetChatSessionRequest, context: Context
    ) -> jobs_pb2.ChatSession:
        client_id = caller(context, self._trusted)
        validate(request)
        session_id = request.name.removeprefix("sessions/")
        turns = await self._sessions.transcript(client_id, session_id)
        if not turns:  # unknown, or another client's: the same answer
            raise ChatSessionNotFound(
                f"chat session {session_id!r} not found", metadata={"session_id": session_id}
            )
        return jobs_pb2.ChatSession(name=request.name, turns=turns)

    def _target(self, request: Any, context: Context) -> JobRef:
        """The job a request names (the caller's client and the name's id), where the job
        enters this process; validates the request on the way."""
        client_id = caller(context, self._trusted)
        validate(request)
        ref = JobRef.from_name(client_id, request.name)
        telemetry.job_id_var.set(ref.id)
        return ref

    async def _existing(
        self, ref: JobRef, job: Job, request: jobs_pb2.CreateJobRequest
    ) -> Job | None:
        """The job already under this id: returned for an identical request (by fingerprint),
        else a conflict."""
        try:
            recorded = await self._store.fingerprint(ref)
        except JobNotFound:
            return None
        if recorded != fingerprint(job):
            raise _reused(request, ref.id, "was used with a different request")
        return await self._store.get(ref)


def caller(context: Context, trusted: Sequence[Secret]) -> str:
    """The client id the edge (or another internal caller) put in `x-client-id`, believed
    only when `x-switchboard-internal` carries one of the `trusted` tokens."""
    # At run time the server gives a sequence of (key, value) pairs, not the stubs' Mapping.
    pairs = cast(Sequence[tuple[str, str | bytes]], context.invocation_metadata() or ())
    metadata = {key: value for key, value in pairs if isinstance(value, str)}
    claimed = metadata.get("x-client-id", "")
    if not claimed:
        raise ClientIdMissing("x-client-id metadata is required")
    if not _internal(metadata.get("x-switchboard-internal", ""), trusted):
        raise ClientIdInvalid("x-client-id is believed only with a valid x-switchboard-internal")
    client_id = ids.check_client_id(claimed)
    telemetry.client_id_var.set(client_id)
    return client_id


def _internal(token: str, trusted: Sequence[Secret]) -> bool:
    # Every token compared in constant time, none skipped: the time says nothing of which.
    matched = False
    for secret in trusted:
        matched |= bool(secret.value) and hmac.compare_digest(secret.value.encode(), token.encode())
    return matched


def check_pipeline(job: Job) -> None:
    """A pipeline runs inputs of its own kind only (the input's oneof is named after it, `_`
    for `-`); a stage graph or fan-out must also hold together (INVALID_STAGE_GRAPH)."""
    kind = job.input.WhichOneof("kind")
    if kind is None or job.pipeline != catalog.pipeline_name(kind):
        raise PipelineInputMismatch(
            f"pipeline {job.pipeline!r} does not take a {kind!r} input",
            metadata={"pipeline": job.pipeline, "input": str(kind)},
        )
    graphs.check_input(job.input)
    if kind == "ingest_document":
        tokens, overlap = chunk_sizes(job.input.ingest_document)
        if overlap >= tokens:  # refused here, not after a worker has read the document
            raise InvalidArgument(
                f"chunk_overlap ({overlap}) must be smaller than chunk_tokens ({tokens})",
                metadata={"field": "chunk_overlap"},
            )


def _job_id(request: jobs_pb2.CreateJobRequest) -> str:
    """The caller's job id, the one its idempotency key names, or a new one."""
    if request.idempotency_key:
        return ids.idempotent_job_id(request.idempotency_key)
    return request.job_id or ids.new_job_id()


def _reused(request: jobs_pb2.CreateJobRequest, job_id: str, why: str) -> SwitchboardError:
    metadata = {"job_id": job_id}
    if request.idempotency_key:
        return IdempotencyKeyReused(f"the idempotency key {why}", metadata=metadata)
    return JobAlreadyExists(f"job id {job_id!r} {why}", metadata=metadata)


def _new_job(ref: JobRef, spec: Job) -> Job:
    stamp = now()
    return Job(
        name=ref.name,
        state=Job.QUEUED,
        pipeline=spec.pipeline,
        input=spec.input,
        labels=spec.labels,
        webhook_url=spec.webhook_url,
        client=ref.client,
        create_time=stamp,
        update_time=stamp,
    )


def _queued(job: Job) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        job=job.name,
        create_time=job.create_time,
        state_changed=jobstates.state_changed(Job.QUEUED),
    )


def _final(job: Job) -> events_pb2.JobEvent:
    changed = jobstates.state_changed(job.state, job.error if job.HasField("error") else None)
    return events_pb2.JobEvent(job=job.name, create_time=job.update_time, state_changed=changed)
