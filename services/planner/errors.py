"""The planner's fixed-reason errors, and the translation of Temporal's and Valkey's errors."""

from __future__ import annotations

import grpc
from temporalio.service import RPCError, RPCStatusCode

from switchboard.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchboardError,
    Unauthenticated,
    Unavailable,
)


class ClientIdMissing(Unauthenticated):
    reason = "CLIENT_ID_MISSING"


class ClientIdInvalid(Unauthenticated):
    reason = "CLIENT_ID_INVALID"


class JobNotFound(NotFound):
    reason = "JOB_NOT_FOUND"


class JobAlreadyExists(AlreadyExists):
    reason = "JOB_ALREADY_EXISTS"


class PipelineInputMismatch(InvalidArgument):
    reason = "PIPELINE_INPUT_MISMATCH"


class InvalidCursor(InvalidArgument):
    reason = "INVALID_CURSOR"


class InvalidPageToken(InvalidArgument):
    reason = "INVALID_PAGE_TOKEN"


class JobNotFinished(FailedPrecondition):
    reason = "JOB_NOT_FINISHED"


class JobFailed(FailedPrecondition):
    reason = "JOB_FAILED"


class JobCancelled(FailedPrecondition):
    reason = "JOB_CANCELLED"


class TemporalUnavailable(Unavailable):
    reason = "TEMPORAL_UNAVAILABLE"


class EventLogUnavailable(Unavailable):
    reason = "EVENT_LOG_UNAVAILABLE"


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
        "the job store rejected the call", reason="TEMPORAL_ERROR", code=grpc.StatusCode.INTERNAL
    )
