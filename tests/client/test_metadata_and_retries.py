"""What the client sends and how it retries, against a real gRPC server whose JobService
records each call's metadata and refuses the first calls as a full queue or an open breaker
would (with RetryInfo): the planner never answers QUEUE_FULL itself."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2
from opentelemetry import trace

from switchboard.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.api.rpc.v1 import error_reason_pb2
from switchboard.client import JobsClient, NotFound, ResourceExhausted, RetryPolicy, Unavailable
from switchboard.common.errors import SwitchboardError, to_rpc_status
from switchboard.common.jobref import JobRef

Reason = error_reason_pb2.ErrorReason
DELAY_S = 0.2


def retry_info(seconds: float) -> any_pb2.Any:
    packed = any_pb2.Any()
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return packed


@dataclass
class Recorder(jobs_pb2_grpc.JobServiceServicer):
    """Answers GetJob and CreateJob after refusing the first `refusals` calls with `refusal`."""

    refusal: SwitchboardError | None = None
    refusals: int = 0
    calls: list[dict[str, str]] = field(default_factory=list)

    async def _answer(self, context: Any, name: str) -> jobs_pb2.Job:
        self.calls.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if self.refusal is not None and len(self.calls) <= self.refusals:
            await context.abort_with_status(to_rpc_status(self.refusal.to_status()))
        return jobs_pb2.Job(name=name, state=jobs_pb2.Job.QUEUED)

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Any) -> jobs_pb2.Job:
        return await self._answer(context, request.name)

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Any) -> jobs_pb2.Job:
        return await self._answer(context, f"jobs/{request.job_id or 'new'}")


@pytest_asyncio.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    servicer = Recorder()  # type: ignore[abstract]  # answers only GetJob and CreateJob
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def client_of(address: str, attempts: int = 5) -> JobsClient:
    policy = RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=1.0)
    return JobsClient(address, client_id="svc-a", internal_token="tok", retry=policy)


@pytest.mark.asyncio
async def test_every_call_carries_identity_hash_keys_and_trace(
    recorder: tuple[Recorder, str],
) -> None:
    servicer, address = recorder
    async with client_of(address) as client:
        with trace.get_tracer("test").start_as_current_span("caller") as span:
            await client.get("jobs/abc")
        await client.get(JobRef("svc-b", "xyz"))
        chat = pipelines_pb2.ChatInput(session_id="s-42", model="m", message="hi")
        job = jobs_pb2.Job(pipeline="chat", input=pipelines_pb2.JobInput(chat=chat))
        await client.create(job, job_id="c-1")
    first, second, third = servicer.calls
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert first["x-client-id"] == "svc-a" and first["x-switchboard-internal"] == "tok"
    assert first["x-job-id"] == "abc" and first["traceparent"].split("-")[1] == trace_id
    assert "x-session-id" not in first
    assert second["x-client-id"] == "svc-b" and second["x-job-id"] == "xyz"  # the ref's client
    assert third["x-session-id"] == "s-42" and third["x-job-id"] == "c-1"


@pytest.mark.asyncio
async def test_a_full_queue_is_retried_after_its_retry_info(
    recorder: tuple[Recorder, str],
) -> None:
    servicer, address = recorder
    servicer.refusal = ResourceExhausted("busy", reason="QUEUE_FULL", details=[retry_info(DELAY_S)])
    servicer.refusals = 2
    async with client_of(address) as client:
        start = time.monotonic()
        job = await client.get("jobs/abc")
    assert job.name == "jobs/abc"
    assert len(servicer.calls) == 3
    assert time.monotonic() - start >= 2 * DELAY_S


@pytest.mark.asyncio
async def test_retries_are_bounded_and_the_error_is_typed(
    recorder: tuple[Recorder, str],
) -> None:
    servicer, address = recorder
    servicer.refusal = Unavailable("open", reason="CIRCUIT_OPEN", details=[retry_info(DELAY_S)])
    servicer.refusals = 100
    async with client_of(address, attempts=3) as client:
        with pytest.raises(Unavailable) as refused:
            await client.get("jobs/abc")
    assert len(servicer.calls) == 3
    assert refused.value.error_reason == Reason.CIRCUIT_OPEN
    assert refused.value.retry_delay == pytest.approx(DELAY_S)


@pytest.mark.asyncio
async def test_other_errors_are_not_retried(recorder: tuple[Recorder, str]) -> None:
    servicer, address = recorder
    servicer.refusal = NotFound("no such job", reason="JOB_NOT_FOUND")
    servicer.refusals = 1
    async with client_of(address) as client:
        with pytest.raises(NotFound) as missing:
            await client.get("jobs/abc")
    assert len(servicer.calls) == 1
    assert missing.value.error_reason == Reason.JOB_NOT_FOUND
    assert missing.value.message == "no such job" and missing.value.retry_delay is None
