"""What a failed activity leaves on a FAILED job: a `google.rpc.Status` with the activity's
reason as ErrorInfo, and the webhook delivery that did not happen."""

from __future__ import annotations

import re

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutError

with workflow.unsafe.imports_passed_through():
    import grpc
    from google.rpc import status_pb2

    from switchboard.api.jobs.v1 import events_pb2
    from switchboard.common.errors import SwitchboardError

    from ..shared import errors

_REASON = re.compile(r"^[A-Z][A-Z0-9_]*$")


def undelivered(error: status_pb2.Status) -> events_pb2.WebhookDelivery:
    failed = events_pb2.WebhookDelivery.FAILED
    return events_pb2.WebhookDelivery(state=failed, error=error)


def failure_status(err: ActivityError) -> status_pb2.Status:
    """The `google.rpc.Status` a FAILED job keeps, with the activity's reason as ErrorInfo."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and _REASON.match(cause.type or ""):
        code = _code(cause.details[0] if cause.details else "")
        extra = cause.details[1] if len(cause.details) > 1 else None
        metadata = {str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {}
        error = SwitchboardError(cause.message, reason=cause.type, code=code, metadata=metadata)
    elif isinstance(cause, TimeoutError):
        error = SwitchboardError(
            "the generation timed out",
            reason=errors.GENERATION_TIMED_OUT,
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
        )
    else:
        error = SwitchboardError("the generation failed", reason=errors.GENERATION_FAILED)
    return error.to_status()


def as_activity_error(err: FailureError, activity_type: str) -> ActivityError:
    """A local activity's failure as a normal activity's. The SDK raises a local activity's own
    failure (ApplicationError, TimeoutError, CancelledError) where a normal activity's comes
    wrapped in ActivityError; wrapped, a job handles both alike (`failure_status`, cancels)."""
    wrapped = ActivityError(
        f"local activity {activity_type} failed",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type=activity_type,
        activity_id="",
        retry_state=None,
    )
    wrapped.__cause__ = err
    return wrapped


def _code(name: object) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.name == name), grpc.StatusCode.INTERNAL)
