"""`JobsClient`: the JobService for internal callers, over the generated grpc.aio stubs.

The planner believes `x-client-id` only beside the internal token, hashes JobService calls
on `x-job-id` and inference calls on `x-session-id`, and continues the caller's trace from
`traceparent`: every call here sets all of them, so no caller builds metadata by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final, TypeVar

import grpc
from google.protobuf import message

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.common.callmetadata import Metadata, call_metadata
from switchboard.common.jobref import JobRef
from switchboard.common.settings import Secret

from .errors import call_failed
from .retry import RetryPolicy

if TYPE_CHECKING:  # the async stub type exists only in the generated stubs
    JobStub = jobs_pb2_grpc.JobServiceAsyncStub

# A unary call past this is lost somewhere.
UNARY_TIMEOUT_SECONDS: Final = 30.0

JobLike = JobRef | str | jobs_pb2.Job
Req = TypeVar("Req", bound=message.Message)
Resp = TypeVar("Resp", bound=message.Message)


class JobsClient:
    """One channel to the JobService (the planner, or Envoy's internal listener)."""

    def __init__(
        self,
        target: str,
        *,
        client_id: str,
        internal_token: Secret | str,
        retry: RetryPolicy | None = None,
        timeout: float = UNARY_TIMEOUT_SECONDS,
    ) -> None:
        self.client_id = client_id
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        # Kept as a Secret, so a repr or traceback of the client never shows it.
        self._token = (
            internal_token if isinstance(internal_token, Secret) else Secret(internal_token)
        )
        self._channel = grpc.aio.insecure_channel(target)
        self._stub: JobStub = jobs_pb2_grpc.JobServiceStub(self._channel)

    async def __aenter__(self) -> JobsClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    def ref(self, job: JobLike) -> JobRef:
        """A job's identity from a JobRef, a Job, a `jobs/{id}` name or a bare id."""
        if isinstance(job, JobRef):
            return job
        name = job.name if isinstance(job, jobs_pb2.Job) else job
        return JobRef.from_name(self.client_id, name)

    async def create(
        self,
        job: jobs_pb2.Job,
        *,
        job_id: str = "",
        idempotency_key: str = "",
        client: str = "",
    ) -> jobs_pb2.Job:
        """Creates and starts a job; with `job_id` or `idempotency_key` a retry is safe."""
        request = jobs_pb2.CreateJobRequest(job=job, job_id=job_id, idempotency_key=idempotency_key)
        session = job.input.chat.session_id if job.input.HasField("chat") else ""
        md = self._metadata(client or self.client_id, job_id=job_id, session_id=session)
        return await self._unary(self._stub.CreateJob, request, md)

    async def get(self, job: JobLike) -> jobs_pb2.Job:
        ref = self.ref(job)
        return await self._unary(
            self._stub.GetJob, jobs_pb2.GetJobRequest(name=ref.name), self._md(ref)
        )

    async def cancel(self, job: JobLike) -> jobs_pb2.Job:
        ref = self.ref(job)
        request = jobs_pb2.CancelJobRequest(name=ref.name)
        return await self._unary(self._stub.CancelJob, request, self._md(ref))

    async def result(self, job: JobLike) -> pipelines_pb2.JobResult:
        """A finished job's result; FailedPrecondition (JOB_NOT_FINISHED) while it runs."""
        ref = self.ref(job)
        request = jobs_pb2.GetJobResultRequest(name=ref.name)
        return await self._unary(self._stub.GetJobResult, request, self._md(ref))

    async def list(self, page_size: int = 0, page_token: str = "") -> jobs_pb2.ListJobsResponse:
        request = jobs_pb2.ListJobsRequest(page_size=page_size, page_token=page_token)
        return await self._unary(self._stub.ListJobs, request, self._metadata(self.client_id))

    async def jobs(self, page_size: int = 0) -> AsyncIterator[jobs_pb2.Job]:
        """Every job of the client, newest first, page after page."""
        token = ""
        while True:
            page = await self.list(page_size, token)
            for job in page.jobs:
                yield job
            if not (token := page.next_page_token):
                return

    async def pipelines(self) -> jobs_pb2.ListPipelinesResponse:
        request = jobs_pb2.ListPipelinesRequest()
        return await self._unary(self._stub.ListPipelines, request, self._metadata(self.client_id))

    async def chat_session(self, session_id: str) -> jobs_pb2.ChatSession:
        request = jobs_pb2.GetChatSessionRequest(name=f"sessions/{session_id}")
        md = self._metadata(self.client_id, session_id=session_id)
        return await self._unary(self._stub.GetChatSession, request, md)

    async def watch(self, job: JobLike, *, after: str = "") -> AsyncIterator[events_pb2.JobEvent]:
        """The job's events after cursor `after` (from the start when empty), ending after
        the terminal event. A dropped connection is resumed after the last cursor delivered,
        so no event is lost or repeated; heartbeats are passed on (they keep no cursor)."""
        ref, cursor, failures = self.ref(job), after, 0
        md = self._md(ref)
        while True:
            call = self._stub.WatchJob(
                jobs_pb2.WatchJobRequest(name=ref.name, after_cursor=cursor), metadata=md
            )
            try:
                async for event in call:
                    failures = 0
                    cursor = event.cursor or cursor
                    yield event
                return
            except grpc.RpcError as exc:
                error = call_failed(exc)
                failures += 1
                delay = self.retry.resume_delay(error, failures)
                if delay is None:
                    raise error from exc
            finally:
                call.cancel()
            await asyncio.sleep(delay)

    async def wait(self, job: JobLike) -> jobs_pb2.Job:
        """Follows the job to its end and returns it as it ended."""
        ref = self.ref(job)
        async for _ in self.watch(ref):
            pass
        return await self.get(ref)

    def _md(self, ref: JobRef) -> Metadata:
        return self._metadata(ref.client, job_id=ref.id)

    def _metadata(self, client: str, *, job_id: str = "", session_id: str = "") -> Metadata:
        token = self._token.value
        return call_metadata(client, internal_token=token, job_id=job_id, session_id=session_id)

    async def _unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        metadata: Metadata,
    ) -> Resp:
        """One call, called again after RetryInfo's delay while the peer refuses it with
        QUEUE_FULL or CIRCUIT_OPEN (up to the policy's attempts); failures raise CallFailed."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await method(request, metadata=metadata, timeout=self.timeout)
            except grpc.RpcError as exc:
                error = call_failed(exc)
                delay = self.retry.retry_delay(error, attempt)
                if delay is None:
                    raise error from exc
            await asyncio.sleep(delay)
