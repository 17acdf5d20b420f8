"""The inference service's errors: fixed reasons clients and the planner can act on."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2

from switchboard.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SwitchboardError,
    Unavailable,
)


class ModelNotFound(NotFound):
    reason = "MODEL_NOT_FOUND"


class ModelTaskMismatch(InvalidArgument):
    reason = "MODEL_TASK_MISMATCH"


class DuplicateRequestId(InvalidArgument):
    reason = "DUPLICATE_REQUEST_ID"


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"


class BackendUnavailable(Unavailable):
    reason = "BACKEND_UNAVAILABLE"


class BackendTimeout(DeadlineExceeded):
    reason = "BACKEND_TIMEOUT"


class BackendError(SwitchboardError):
    """The model itself failed; the message is Triton's, which names the model's problem."""

    code = grpc.StatusCode.INTERNAL
    reason = "BACKEND_ERROR"


class FirstTokenTimeout(DeadlineExceeded):
    reason = "FIRST_TOKEN_TIMEOUT"


class GenerationTimeout(DeadlineExceeded):
    reason = "GENERATION_TIMEOUT"


class Unimplemented(SwitchboardError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "NOT_IMPLEMENTED"


def queue_full(limit: int, retry_after_s: float) -> QueueFull:
    """QUEUE_FULL with a RetryInfo, so callers back off instead of hammering."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after_s * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return QueueFull(
        f"{limit} generations already running; retry later",
        metadata={"limit": str(limit)},
        details=[detail],
    )
