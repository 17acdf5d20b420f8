"""Composition root of the planner's gRPC server: `python -m switchboard.planner`."""

from __future__ import annotations

import asyncio
import logging
import os

import grpc
from grpc_health.v1._async import HealthServicer
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2
from switchboard.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from switchboard.common import telemetry
from switchboard.common.grpcserver import build_server, set_serving

from .. import process
from ..shared.config import Settings
from ..stores.events import EventLog
from .servicer import JobServicer
from .store import JobStore

log = logging.getLogger(__name__)

SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name
# Envoy routes reflection to the planner, so it describes the whole internal API.
REFLECTED = [inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name]


def build(
    settings: Settings, temporal: Client, valkey_client: Valkey
) -> tuple[grpc.aio.Server, HealthServicer]:
    """The server with JobService, health and reflection, bound but not started."""
    events = EventLog(valkey_client, heartbeat_seconds=settings.heartbeat_seconds)
    if not settings.internal_tokens:
        log.warning("no SWITCHBOARD_PLANNER_INTERNAL_TOKENS: every call naming a client fails")
    servicer = JobServicer(
        JobStore(temporal, settings.task_queue), events, internal_tokens=settings.internal_tokens
    )
    return build_server(
        f"{settings.host}:{settings.port}",
        register=[lambda server: jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)],
        services=[SERVICE],
        reflected=REFLECTED,
    )


async def serve(settings: Settings) -> None:
    temporal = await process.connect_temporal(
        settings.temporal_address, settings.temporal_namespace
    )
    valkey_client = process.valkey_client(settings.valkey_url)
    server, health_servicer = build(settings, temporal, valkey_client)
    await server.start()
    await set_serving(health_servicer, [SERVICE], True)
    log.info("ready", extra={"fields": {"port": settings.port, "task_queue": settings.task_queue}})
    try:
        received = await process.wait_for_stop()
        log.info("stopping", extra={"fields": {"signal": received}})
    finally:
        await set_serving(health_servicer, [SERVICE], False)
        await server.stop(settings.grace_seconds)
        await valkey_client.aclose()
    log.info("stopped")


def main() -> None:
    settings = Settings.from_env(os.environ)
    telemetry.setup("planner", settings.log_level)
    telemetry.serve_metrics(settings.metrics_port, settings.host)
    asyncio.run(serve(settings))
    process.exit_after_shutdown()
