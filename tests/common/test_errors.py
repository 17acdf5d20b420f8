from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from switchboard.common.errors import (
    NotFound,
    SwitchboardError,
    from_rpc_error,
    internal_status,
    is_upstream_reason,
)


def test_status_round_trip_keeps_code_reason_and_metadata() -> None:
    err = NotFound("no such job", reason="JOB_NOT_FOUND", metadata={"job": "jobs/x"})
    status = err.to_status()
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "JOB_NOT_FOUND",
        "switchboard.dev",
        {"job": "jobs/x"},
    )
    back = SwitchboardError.from_status(status)
    assert (back.code, back.reason, back.message) == (
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
        "no such job",
    )


def test_subclass_defaults_apply_without_arguments() -> None:
    err = NotFound("gone")
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


def test_internal_status_leaks_nothing() -> None:
    status = internal_status()
    assert status.code == grpc.StatusCode.INTERNAL.value[0]
    assert "internal error" in status.message


def test_a_peer_without_a_reason_of_ours_reads_as_upstream_code() -> None:
    bare = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone", None
    )
    err = from_rpc_error(bare)
    assert (err.code, err.reason, err.message) == (
        grpc.StatusCode.UNAVAILABLE,
        "UPSTREAM_UNAVAILABLE",
        "gone",
    )
    assert is_upstream_reason(err.reason)
    assert not is_upstream_reason("UNAVAILABLE")
