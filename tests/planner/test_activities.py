"""The generate activity's side of the inference protocol: ids, trace context, errors."""

from __future__ import annotations

import grpc
import pytest

from switchboard.common.errors import SwitchboardError
from switchboard.planner.work.outage import application_error

from .support import Planner, create_request, states

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.mark.asyncio
async def test_inference_call_carries_the_job_and_the_callers_trace(planner: Planner) -> None:
    metadata = (*planner.md(), ("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01"))
    job = await planner.stub.CreateJob(create_request("echo", "a b"), metadata=metadata)
    assert states(await planner.watch(job.name))[-1] == "SUCCEEDED"

    (start,) = planner.fake.starts
    job_id = job.name.removeprefix("jobs/")
    assert start.request_id == job_id
    assert start.metadata["x-session-id"] == job_id
    version, trace_id, parent, _ = start.metadata["traceparent"].split("-")
    # Same trace as the CreateJob call, continued through the workflow into the activity.
    assert (version, trace_id) == ("00", TRACE_ID)
    assert parent != CALLER_SPAN


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (grpc.StatusCode.INTERNAL, True),
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.FAILED_PRECONDITION, False),
    ],
)
def test_inference_errors_keep_their_reason_and_retry_only_when_useful(
    code: grpc.StatusCode, retryable: bool
) -> None:
    error = application_error(SwitchboardError("boom", reason="MODEL_BROKE", code=code))
    assert error.type == "MODEL_BROKE"
    assert error.details == (code.name,)
    assert error.non_retryable is not retryable
