"""The shared server plumbing on the wire: a real grpc.aio server and real stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc
from switchboard.common.errors import NotFound, from_rpc_error
from switchboard.common.grpcserver import build_server, set_serving

SERVICE = "switchboard.jobs.v1.JobService"


class Jobs(jobs_pb2_grpc.JobServiceServicer):
    """Just enough of JobService to exercise the interceptor's three outcomes."""

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: object) -> jobs_pb2.Job:
        if request.name == "jobs/boom":
            raise RuntimeError("secret detail")
        raise NotFound("no such job", reason="JOB_NOT_FOUND")

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: object
    ) -> AsyncIterator[events_pb2.JobEvent]:
        yield events_pb2.JobEvent(cursor="1-0")
        raise NotFound("history gone", reason="JOB_NOT_FOUND")


@pytest.mark.asyncio
async def test_errors_health_and_reflection_on_the_wire() -> None:
    server, health = build_server(
        "127.0.0.1:0",
        [lambda s: jobs_pb2_grpc.add_JobServiceServicer_to_server(Jobs(), s)],  # type: ignore[abstract]
        [SERVICE],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await set_serving(health, [SERVICE], True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetJob(jobs_pb2.GetJobRequest(name="jobs/nope"))
            err = from_rpc_error(caught.value)
            assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetJob(jobs_pb2.GetJobRequest(name="jobs/boom"))
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in (caught.value.details() or "")

            received = []
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for event in stub.WatchJob(jobs_pb2.WatchJobRequest(name="jobs/x")):
                    received.append(event.cursor)
            assert received == ["1-0"]
            assert from_rpc_error(caught.value).reason == "JOB_NOT_FOUND"

            check = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE)
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING

            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = reflect.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await call.read()
            await call.done_writing()
            names = {s.name for s in reply.list_services_response.service}
            assert {SERVICE, "grpc.health.v1.Health"} <= names
    finally:
        await server.stop(None)


@pytest.mark.asyncio
async def test_health_watch_follows_the_servers_status() -> None:
    """Watch is a coroutine that writes (not an async generator) in the aio servicer: the
    interceptor must keep it one, or grpc.aio fails the call with a TypeError."""
    server, health = build_server("127.0.0.1:0", [], [SERVICE])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
            )
            first = await call.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            await set_serving(health, [SERVICE], True)
            serving = await call.read()
            assert serving.status == health_pb2.HealthCheckResponse.SERVING
            await set_serving(health, [SERVICE], False)
            stopped = await call.read()
            assert stopped.status == health_pb2.HealthCheckResponse.NOT_SERVING
            call.cancel()
    finally:
        await server.stop(None)
