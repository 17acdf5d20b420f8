"""Typed errors for callers of the client: one class per kind of failure, each carrying the
peer's stable reason as an `ErrorReason` and, when the peer gave one, its `RetryInfo` delay."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from switchboard.api.rpc.v1 import error_reason_pb2
from switchboard.common.errors import SwitchboardError, from_rpc_error

ErrorReason = error_reason_pb2.ErrorReason


class CallFailed(SwitchboardError):
    """A JobService call failed; `error_reason` is what to branch on, never the message."""

    @property
    def error_reason(self) -> ErrorReason.ValueType:
        """The reason as the enum; UNSPECIFIED for one that is not ours (UPSTREAM_*)."""
        try:
            return ErrorReason.Value(self.reason)
        except ValueError:
            return ErrorReason.ERROR_REASON_UNSPECIFIED

    @property
    def retry_delay(self) -> float | None:
        """Seconds the peer asked to wait before retrying (google.rpc.RetryInfo), if it did."""
        for detail in self.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.ToTimedelta().total_seconds())
        return None


class InvalidArgument(CallFailed):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CallFailed):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(CallFailed):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(CallFailed):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(CallFailed):
    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(CallFailed):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[CallFailed]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        Unauthenticated,
    )
}


def call_failed(error: grpc.RpcError) -> CallFailed:
    """The failed call as the class of its gRPC code, reason and details kept."""
    peer = from_rpc_error(error)
    cls = _BY_CODE.get(peer.code, CallFailed)
    return cls(
        peer.message,
        reason=peer.reason,
        code=peer.code,
        metadata=peer.metadata,
        details=peer.details,
    )
