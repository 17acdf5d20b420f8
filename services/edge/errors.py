"""The edge's one error translation: a `SwitchboardError` becomes an HTTP answer.

The HTTP status comes from the gRPC code by the standard table (`HTTP_STATUS`), except
for the few reasons listed in `OVERRIDES`. The body is the Google error shape:
`{"error": {"code", "status", "message", "details": [Any as JSON with "@type"]}}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final

import grpc
from google.protobuf import any_pb2, json_format
from starlette.responses import Response

from switchboard.common.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SwitchboardError,
    Unauthenticated,
    Unavailable,
    from_rpc_error,
    internal_status,
    is_upstream_reason,
)

log = logging.getLogger(__name__)


class ApiKeyInvalid(Unauthenticated):
    reason = "API_KEY_INVALID"


class KeyStoreUnavailable(Unavailable):
    """Valkey, which holds the API keys, did not answer and the key was not cached."""


class RateLimited(ResourceExhausted):
    reason = "RATE_LIMITED"


class RouteNotFound(NotFound):
    reason = "ROUTE_NOT_FOUND"


class MethodNotAllowed(SwitchboardError):
    # gRPC has no "wrong verb"; UNIMPLEMENTED is nearest, and OVERRIDES answers 405.
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "METHOD_NOT_ALLOWED"


class ModelNotFound(NotFound):
    """GET /v1/models/{id} for a name the inference service does not serve."""

    reason = "MODEL_NOT_FOUND"


class MalformedRequest(InvalidArgument):
    """The body or query could not be read into the request message at all."""

    reason = "MALFORMED_REQUEST"


class BodyTooLarge(InvalidArgument):
    # OVERRIDES answers 413: the request is fine in kind, only too big.
    reason = "BODY_TOO_LARGE"


class BodyTooDeep(InvalidArgument):
    reason = "BODY_TOO_DEEP"


class BodyNotUtf8(InvalidArgument):
    """A JSON body (or frame) that is not UTF-8 (RFC 8259 8.1): another encoding, a byte
    order mark, a broken sequence, or a string escaping half a surrogate pair."""

    reason = "BODY_NOT_UTF8"


class InvalidCursor(InvalidArgument):
    """A Last-Event-ID (or `?lastEventId=`, `?after=`) that is not an event cursor."""

    reason = "INVALID_CURSOR"


class TooManyStreams(ResourceExhausted):
    """The client already holds its cap of open event streams and sockets."""

    reason = "TOO_MANY_STREAMS"


class StreamTokenInvalid(Unauthenticated):
    """A `?token=` on an event stream that is forged, expired or for another job."""


HTTP_STATUS: Final[Mapping[grpc.StatusCode, int]] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# Reasons whose HTTP answer differs from their code's row above: (status, extra headers).
# Documented API behaviour; keep this table tiny.
OVERRIDES: Final[Mapping[str, tuple[int, Mapping[str, str]]]] = {
    # GetJobResult on a running job: the job's state conflicts with the ask, and asking
    # again later will succeed, which 400 would deny.
    "JOB_NOT_FINISHED": (409, {"Retry-After": "1"}),
    "METHOD_NOT_ALLOWED": (405, {}),
    "BODY_TOO_LARGE": (413, {}),
    # The same Idempotency-Key with a different request: the key is wrong, not the moment,
    # so 422 as the IETF Idempotency-Key draft asks; 409 would invite a retry.
    "IDEMPOTENCY_KEY_REUSED": (422, {}),
    # A slot frees when one of the client's streams ends; EventSource retries after 2 s too.
    "TOO_MANY_STREAMS": (429, {"Retry-After": "2"}),
}


def http_status(error: SwitchboardError) -> tuple[int, dict[str, str]]:
    if override := OVERRIDES.get(error.reason):
        return override[0], dict(override[1])
    status = HTTP_STATUS.get(error.code, 500)
    headers = {"WWW-Authenticate": 'Bearer realm="switchboard"'} if status == 401 else {}
    return status, headers


def error_body(error: SwitchboardError) -> dict[str, Any]:
    status, _ = http_status(error)
    return {
        "error": {
            "code": status,
            "status": error.code.name,
            "message": error.message,
            "details": [_detail(d) for d in error.to_status().details],
        }
    }


def error_response(error: SwitchboardError, headers: Mapping[str, str] | None = None) -> Response:
    status, extra = http_status(error)
    body = json.dumps(error_body(error), separators=(",", ":"), sort_keys=True)
    return Response(body, status, {**extra, **(headers or {})}, media_type="application/json")


def internal_error() -> SwitchboardError:
    """What a client sees for an unexpected failure; the details go to the log only."""
    return SwitchboardError.from_status(internal_status())


def upstream_error(error: grpc.RpcError, service: str = "the job service") -> SwitchboardError:
    """A peer's rich status (the planner's, or `service`'s), reason included, as our error."""
    translated = from_rpc_error(error)
    if is_upstream_reason(translated.reason):
        # No status from our own code: the transport's text names internal addresses.
        fields = {"service": service, "code": translated.code.name, "details": translated.message}
        log.warning("upstream call failed in transport", extra={"fields": fields})
        translated.message = f"{service} did not answer ({translated.code.name})"
    return translated


def _detail(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(detail, preserving_proto_field_name=False)
    except TypeError:
        # A detail type this process does not know still says what it is.
        return {"@type": detail.type_url}
