"""The edge's one gRPC channel to the planner, and the calls it makes on it."""

from __future__ import annotations

from typing import Final, cast

import grpc
from google.protobuf import message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc
from switchboard.common.callmetadata import Metadata, identity
from switchboard.common.settings import Secret

from .errors import upstream_error

# A unary call past this is lost somewhere; the client gets 504 and may retry.
UNARY_TIMEOUT_SECONDS: Final = 30.0
READY_TIMEOUT_SECONDS: Final = 2.0
SERVICE: Final = jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
WatchCall = grpc.aio.UnaryStreamCall[jobs_pb2.WatchJobRequest, events_pb2.JobEvent]


class Planner:
    def __init__(self, address: str, internal_token: Secret | None = None) -> None:
        self.address = address
        # Added to every call: the planner believes `x-client-id` only beside it.
        self._internal = identity(internal_token=internal_token.value if internal_token else "")
        self._channel = grpc.aio.insecure_channel(address)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def call(self, rpc: str, request: message.Message, metadata: Metadata) -> message.Message:
        """A unary JobService call; a failure is raised as our error with the planner's reason."""
        method = getattr(self._jobs, rpc)
        try:
            reply = await method(
                request, metadata=(*metadata, *self._internal), timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise upstream_error(exc) from exc
        return cast(message.Message, reply)

    def watch(self, request: jobs_pb2.WatchJobRequest, metadata: Metadata) -> WatchCall:
        # No deadline: a watch lasts as long as the job; cancelling the call ends it.
        return self._jobs.WatchJob(request, metadata=(*metadata, *self._internal))

    async def health(self) -> str:
        """The planner's JobService health status name, or the failed call's code name."""
        check = health_pb2.HealthCheckRequest(service=SERVICE)
        try:
            reply = await self._health.Check(check, timeout=READY_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def close(self) -> None:
        await self._channel.close(None)
