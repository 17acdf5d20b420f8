"""Every error reason the planner gives, and its fixed-reason errors.

Reasons are the names of `ErrorReason` values (switchboard.api.rpc.v1): spelled through the
enum here, so a reason the API does not define fails at import, not in a client. The lists of
non-retryable reasons that the workflow's retry policies carry are built here too.
"""

from __future__ import annotations

import grpc

from switchboard.api.rpc.v1.error_reason_pb2 import ErrorReason as R
from switchboard.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
    upstream_reason,
)


def _name(reason: R.ValueType) -> str:
    return R.Name(reason)


def reason_names(*reasons: R.ValueType) -> list[str]:
    """The reasons' names, in order (what a RetryPolicy's non_retryable_error_types holds)."""
    return [_name(r) for r in reasons]


# Reasons the planner sets on failures it builds itself (not through an error class below).
GENERATION_FAILED = _name(R.GENERATION_FAILED)
GENERATION_TIMED_OUT = _name(R.GENERATION_TIMED_OUT)
DEADLINE_EXCEEDED = _name(R.DEADLINE_EXCEEDED)
STAGE_FAILED = _name(R.STAGE_FAILED)
TOO_FEW_SUCCEEDED = _name(R.TOO_FEW_SUCCEEDED)
NOT_IMPLEMENTED = _name(R.NOT_IMPLEMENTED)
JOB_ABORTED = _name(R.JOB_ABORTED)
TEMPORAL_ERROR = _name(R.TEMPORAL_ERROR)
INFERENCE_STREAM_ENDED = _name(R.INFERENCE_STREAM_ENDED)
NOT_IN_WORKFLOW = _name(R.NOT_IN_WORKFLOW)
OUTAGE_HORIZON_EXCEEDED = _name(R.OUTAGE_HORIZON_EXCEEDED)
INTERNAL = _name(R.INTERNAL)

# Failures a retry cannot fix, per kind of activity (the workflow's retry policies).
NOT_RETRYABLE_GENERATION = reason_names(R.VALIDATION_FAILED, R.INVALID_ARGUMENT, R.MODEL_NOT_FOUND)
NOT_RETRYABLE_DOCUMENT = NOT_RETRYABLE_GENERATION + reason_names(
    R.MODEL_TASK_MISMATCH,
    R.DOCUMENT_UNREADABLE,
    R.DOCUMENT_EMPTY,
    R.COLLECTION_NOT_FOUND,
    R.EMBEDDING_MODEL_MISMATCH,
)
NOT_RETRYABLE_WEBHOOK = reason_names(R.WEBHOOK_DESTINATION_FORBIDDEN, R.WEBHOOK_SECRET_MISSING)

# Reasons that name an unavailable dependency, whatever gRPC code carries them: an activity
# failing with one waits the outage out (work/outage.py).
OUTAGE_REASONS = frozenset(
    {
        *reason_names(
            R.UNAVAILABLE,
            R.BACKEND_UNAVAILABLE,
            R.CIRCUIT_OPEN,
            R.QUEUE_FULL,
            R.INFERENCE_STREAM_ENDED,
            R.EVENT_LOG_UNAVAILABLE,
            R.VECTOR_STORE_UNAVAILABLE,
            R.CHAT_STORE_UNAVAILABLE,
            R.TEMPORAL_UNAVAILABLE,
        ),
        # A peer that gave no reason of ours and said UNAVAILABLE.
        upstream_reason(grpc.StatusCode.UNAVAILABLE),
    }
)


class ClientIdMissing(Unauthenticated):
    reason = _name(R.CLIENT_ID_MISSING)


class ClientIdInvalid(Unauthenticated):
    reason = _name(R.CLIENT_ID_INVALID)


class JobNotFound(NotFound):
    reason = _name(R.JOB_NOT_FOUND)


class JobAlreadyExists(AlreadyExists):
    reason = _name(R.JOB_ALREADY_EXISTS)


class PipelineInputMismatch(InvalidArgument):
    reason = _name(R.PIPELINE_INPUT_MISMATCH)


class InvalidCursor(InvalidArgument):
    reason = _name(R.INVALID_CURSOR)


class InvalidPageToken(InvalidArgument):
    reason = _name(R.INVALID_PAGE_TOKEN)


class JobNotFinished(FailedPrecondition):
    reason = _name(R.JOB_NOT_FINISHED)


class JobFailed(FailedPrecondition):
    reason = _name(R.JOB_FAILED)


class JobCancelled(FailedPrecondition):
    reason = _name(R.JOB_CANCELLED)


class TemporalUnavailable(Unavailable):
    reason = _name(R.TEMPORAL_UNAVAILABLE)


class EventLogUnavailable(Unavailable):
    reason = _name(R.EVENT_LOG_UNAVAILABLE)


class ChatSessionNotFound(NotFound):
    reason = _name(R.CHAT_SESSION_NOT_FOUND)


class ChatStoreUnavailable(Unavailable):
    reason = _name(R.CHAT_STORE_UNAVAILABLE)


class InvalidStageGraph(InvalidArgument):
    reason = _name(R.INVALID_STAGE_GRAPH)


class IdempotencyKeyReused(AlreadyExists):
    reason = _name(R.IDEMPOTENCY_KEY_REUSED)


class DocumentUnreadable(InvalidArgument):
    reason = _name(R.DOCUMENT_UNREADABLE)


class DocumentEmpty(InvalidArgument):
    reason = _name(R.DOCUMENT_EMPTY)


class VectorStoreUnavailable(Unavailable):
    reason = _name(R.VECTOR_STORE_UNAVAILABLE)


class CollectionNotFound(NotFound):
    reason = _name(R.COLLECTION_NOT_FOUND)


class EmbeddingModelMismatch(FailedPrecondition):
    reason = _name(R.EMBEDDING_MODEL_MISMATCH)


class WebhookDestinationForbidden(FailedPrecondition):
    reason = _name(R.WEBHOOK_DESTINATION_FORBIDDEN)


class WebhookSecretMissing(FailedPrecondition):
    reason = _name(R.WEBHOOK_SECRET_MISSING)


class WebhookReceiverRefused(FailedPrecondition):
    """An answer a retry cannot change (see `retryable_status`)."""

    reason = _name(R.WEBHOOK_RECEIVER_REFUSED)


class WebhookDeliveryFailed(Unavailable):
    """No answer, or one a later attempt may not get: the only kind that is retried."""

    reason = _name(R.WEBHOOK_DELIVERY_FAILED)
