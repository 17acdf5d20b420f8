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


class CircuitOpen(Unavailable):
    """Every candidate's breaker is open: the service refuses without calling Triton."""

    reason = "CIRCUIT_OPEN"


class BackendTimeout(DeadlineExceeded):
    reason = "BACKEND_TIMEOUT"


class BackendRejectedInput(InvalidArgument):
    """Triton said INVALID_ARGUMENT: the request, not the backend, is at fault."""

    reason = "BACKEND_REJECTED_INPUT"


class BackendError(SwitchboardError):
    """The model itself failed; the message is Triton's, which names the model's problem."""

    code = grpc.StatusCode.INTERNAL
    reason = "BACKEND_ERROR"


class FirstTokenTimeout(DeadlineExceeded):
    reason = "FIRST_TOKEN_TIMEOUT"


class InterTokenTimeout(DeadlineExceeded):
    reason = "INTER_TOKEN_TIMEOUT"


class GenerationTimeout(DeadlineExceeded):
    reason = "GENERATION_TIMEOUT"


def retry_info(retry_after_s: float) -> any_pb2.Any:
    """A google.rpc.RetryInfo detail, so callers back off instead of hammering."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(max(retry_after_s, 0.0) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return detail


def queue_full(model: str, limit: int, retry_after_s: float) -> QueueFull:
    return QueueFull(
        f"model {model!r} has {limit} requests in flight or queued; retry later",
        metadata={"model": model, "limit": str(limit)},
        details=[retry_info(retry_after_s)],
    )


def circuit_open(route: str, models: list[str], retry_after_s: float) -> CircuitOpen:
    return CircuitOpen(
        f"{route!r} is unavailable: the circuit breaker of {', '.join(models)} is open",
        metadata={"model": route, "retry_after_s": f"{retry_after_s:.3f}"},
        details=[retry_info(retry_after_s)],
    )
