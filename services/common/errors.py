"""The one error model of Switchboard.

Every service raises `SwitchboardError` (or a fixed-reason subclass); the server
interceptor turns it into a `google.rpc.Status` carrying an `ErrorInfo` with a stable
`reason`, and the edge turns that into HTTP. Foreign errors are translated where they
enter, never by matching message text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "switchboard.dev"


class SwitchboardError(Exception):
    """An error with a gRPC code and a stable machine-readable reason."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        code: grpc.StatusCode | None = None,
        metadata: Mapping[str, str] | None = None,
        details: Sequence[any_pb2.Any] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if code is not None:
            self.code = code
        self.metadata = dict(metadata or {})
        self.details = list(details)

    def to_status(self) -> status_pb2.Status:
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        )
        return status_pb2.Status(
            code=self.code.value[0], message=self.message, details=[info, *self.details]
        )

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> SwitchboardError:
        """Rebuilds the error a peer sent; the reason survives the hop."""
        reason, metadata, rest = "UNKNOWN", {}, []
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
            else:
                rest.append(detail)
        code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
        return cls(status.message, reason=reason, code=code, metadata=metadata, details=rest)


_CODES = {c.value[0]: c for c in grpc.StatusCode}


class InvalidArgument(SwitchboardError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFound(SwitchboardError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(SwitchboardError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(SwitchboardError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class ResourceExhausted(SwitchboardError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(SwitchboardError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class DeadlineExceeded(SwitchboardError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Cancelled(SwitchboardError):
    code = grpc.StatusCode.CANCELLED
    reason = "CANCELLED"


class Unauthenticated(SwitchboardError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


def internal_status() -> status_pb2.Status:
    """What callers see for an unexpected failure: no internals leak."""
    return SwitchboardError("internal error; see server logs", reason="INTERNAL").to_status()


UPSTREAM_PREFIX = "UPSTREAM_"


def upstream_reason(code: grpc.StatusCode) -> str:
    """The reason of a failed peer that gave none of ours: `UPSTREAM_<GRPC_CODE>`, the one
    family outside the ErrorReason enum (error_reason.proto says so)."""
    return f"{UPSTREAM_PREFIX}{code.name}"


def is_upstream_reason(reason: str) -> bool:
    return reason.startswith(UPSTREAM_PREFIX)


def from_rpc_error(error: grpc.RpcError) -> SwitchboardError:
    """Translates a failed call to a peer into our error, keeping its reason if it has one."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    pairs = cast(Iterable[tuple[str, str | bytes]], trailers or ())
    for key, value in pairs:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return SwitchboardError.from_status(status_pb2.Status.FromString(value))
    details = error.details() if hasattr(error, "details") else None
    return SwitchboardError(details or code.name, reason=upstream_reason(code), code=code)


# Where gRPC carries the rich google.rpc.Status; sync calls and aio errors alike.
_DETAILS_KEY = "grpc-status-details-bin"


def to_rpc_status(status: status_pb2.Status) -> grpc.Status:
    return rpc_status.to_status(status)


def code_name(status: status_pb2.Status) -> str:
    return code_pb2.Code.Name(status.code) if status.code in code_pb2.Code.values() else "UNKNOWN"
