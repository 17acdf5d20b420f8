"""Jobs as Temporal workflows: start, look up, cancel and list them for one client.

Each workflow carries its Job in the `job` memo (set at start, updated by the workflow on
every transition), so lookups and listings work even when no worker is up; a running job's
live state comes from the workflow's `snapshot` query. The `request` memo (set at start,
never changed) is the fingerprint of the request that created the job: a repeated create
(same job id or idempotency key) is compared with it, not with the job memo's input, which
may hold less than the request did.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

import grpc
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.jobref import JobRef, client_prefix
from switchboard.common.jobstates import TERMINAL_STATES

from ..flows.workflow import JobWorkflow
from ..shared import errors, redact
from ..shared.errors import InvalidPageToken, JobNotFound, TemporalUnavailable
from ..shared.tasks import MEMO_JOB, WORKFLOW

log = logging.getLogger(__name__)

Job = jobs_pb2.Job
MEMO_REQUEST = "request"
LIST_TIMEOUT = timedelta(seconds=10)

# A workflow that ended without running to its end (terminated by an operator, timed out).
_ABORTED = {
    WorkflowExecutionStatus.CANCELED: Job.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: Job.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: Job.FAILED,
    WorkflowExecutionStatus.FAILED: Job.FAILED,
}


class JobStore:
    def __init__(
        self, client: Client, task_queue: str, *, query_timeout: timedelta = timedelta(seconds=2)
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._query_timeout = query_timeout

    async def start(self, ref: JobRef, job: Job) -> bool:
        """Starts the job's workflow; False when the id is taken (by a job Temporal retains)."""
        try:
            await self._client.start_workflow(
                JobWorkflow.run,
                job,
                id=ref.workflow_id,
                task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={MEMO_JOB: redact.stored_view(job), MEMO_REQUEST: fingerprint(job)},
            )
        except WorkflowAlreadyStartedError:
            return False
        except RPCError as e:
            raise from_temporal(e, ref.id) from e
        return True

    async def find(self, ref: JobRef) -> Job:
        """The job as last recorded (memo); JobNotFound for unknown ids and other clients."""
        job, _ = await self.describe(ref)
        return job

    async def fingerprint(self, ref: JobRef) -> str:
        """The fingerprint of the request that created the job (JobNotFound as `find`)."""
        handle = self._client.get_workflow_handle(ref.workflow_id)
        try:
            description = await handle.describe()
        except RPCError as e:
            raise from_temporal(e, ref.id) from e
        try:
            recorded: str = await description.memo_value(MEMO_REQUEST, type_hint=str)
        except KeyError:  # started before fingerprints were kept: its memo has the request
            return fingerprint(await _recorded(description))
        return recorded

    async def describe(self, ref: JobRef) -> tuple[Job, bool]:
        """The job as last recorded, and whether its workflow has closed."""
        handle = self._client.get_workflow_handle(ref.workflow_id)
        try:
            description = await handle.describe()
        except RPCError as e:
            raise from_temporal(e, ref.id) from e
        closed = description.status not in (None, WorkflowExecutionStatus.RUNNING)
        return await _recorded(description), closed

    async def get(self, ref: JobRef) -> Job:
        """The job as it is now: a running workflow answers the `snapshot` query."""
        return await self.live(ref, await self.find(ref))

    async def live(self, ref: JobRef, job: Job) -> Job:
        """The job as it is now, given its memo (`find`): a finished job is its memo, a
        running one answers the `snapshot` query (the memo when no worker answers in time)."""
        if job.state in TERMINAL_STATES:
            return job
        handle = self._client.get_workflow_handle(ref.workflow_id)
        try:
            live: Job = await handle.query(JobWorkflow.snapshot, rpc_timeout=self._query_timeout)
        except (RPCError, WorkflowQueryFailedError) as e:
            # No worker answered in time: the memo is the state of the last transition.
            log.info("snapshot query failed", extra={"fields": {"error": repr(e)}})
            return job
        return live

    async def cancel(self, ref: JobRef) -> Job:
        """Asks the workflow to cancel; a finished job is returned unchanged."""
        job = await self.find(ref)  # the memo: no wait for a worker to answer
        if job.state in TERMINAL_STATES:
            return job
        handle = self._client.get_workflow_handle(ref.workflow_id)
        try:
            await handle.cancel()
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise from_temporal(e, ref.id) from e
            return await self.get(ref)  # it finished meanwhile
        job.state = Job.CANCELLING
        return job

    async def list(
        self, client_id: str, page_size: int, page_token: bytes | None
    ) -> tuple[list[Job], bytes]:
        """One page of the client's jobs (running first, then by start time, newest first)."""
        prefix = client_prefix(client_id)
        query = f"WorkflowType = '{WORKFLOW}' AND WorkflowId STARTS_WITH '{prefix}'"
        pages = self._client.list_workflows(
            query, page_size=page_size, next_page_token=page_token, rpc_timeout=LIST_TIMEOUT
        )
        try:
            await pages.fetch_next_page()
        except RPCError as e:
            if e.status == RPCStatusCode.INVALID_ARGUMENT:
                raise InvalidPageToken("page_token is not one this service gave out") from e
            raise from_temporal(e) from e
        jobs = [await _recorded(execution) for execution in pages.current_page or ()]
        return jobs, pages.next_page_token or b""


def fingerprint(job: Job) -> str:
    """sha256 of what makes two create requests the same: pipeline, input, labels and
    webhook_url, serialized deterministically (map entries in key order)."""
    request = Job(
        pipeline=job.pipeline, input=job.input, labels=job.labels, webhook_url=job.webhook_url
    )
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def _recorded(execution: WorkflowExecution) -> Job:
    try:
        job: Job = await execution.memo_value(MEMO_JOB, type_hint=Job)
    except KeyError as e:
        raise SwitchboardError(f"workflow {execution.id} carries no job") from e
    if execution.status in _ABORTED and job.state not in TERMINAL_STATES:
        job.state = _ABORTED[execution.status]
    if job.state == Job.FAILED and not job.HasField("error"):
        job.error.CopyFrom(
            SwitchboardError(
                "the job was stopped outside the service", reason=errors.JOB_ABORTED
            ).to_status()
        )
    return job


# Temporal answers these when it is down, overloaded or slow: the caller may retry.
_TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
}


def from_temporal(error: RPCError, job_id: str = "") -> SwitchboardError:
    """Translates a failed Temporal call where it enters the planner."""
    if error.status == RPCStatusCode.NOT_FOUND:
        return JobNotFound(f"job {job_id!r} not found", metadata={"job_id": job_id})
    if error.status in _TRANSIENT:
        return TemporalUnavailable("the job store is unavailable; retry later")
    return SwitchboardError(
        "the job store rejected the call",
        reason=errors.TEMPORAL_ERROR,
        code=grpc.StatusCode.INTERNAL,
    )
