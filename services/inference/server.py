"""Composition root of the inference service: `python -m switchboard.inference`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import grpc

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common import telemetry
from switchboard.common.grpcserver import build_server, set_serving

from . import canary
from .config import Settings
from .generation import Limits
from .models import GENERATE, Model, default_catalog
from .servicer import SERVICE_NAME, InferenceServicer
from .session import Admission
from .triton import TritonClient

log = logging.getLogger(__name__)

# grpc_health's stubs do not describe its asyncio servicer.
HealthServicer = Any

CANARY_MODEL = "test-streamer"


@dataclass
class Running:
    """A started server; `serving` completes once the canary passed and health says so."""

    server: grpc.aio.Server
    health: HealthServicer
    triton: TritonClient
    serving: asyncio.Task[None]

    async def stop(self, grace_s: float) -> None:
        self.serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.serving
        await set_serving(self.health, [SERVICE_NAME], False)
        # In-flight streams get the grace period; then their generations are cancelled,
        # which cancels their Triton streams, before the channel to Triton closes.
        await self.server.stop(grace_s)
        await self.triton.close()


async def start(settings: Settings) -> Running:
    """Builds and starts everything; health stays NOT_SERVING until the canary passes."""
    triton = TritonClient(settings.triton_grpc)
    catalog = default_catalog(settings.test_streamer_tokens_per_second)
    limits = Limits(settings.first_token_timeout_s, settings.generation_timeout_s)
    servicer = InferenceServicer(
        catalog, triton, Admission(settings.max_concurrent_generations), limits
    )
    server, health_servicer = build_server(
        f"{settings.host}:{settings.port}",
        register=[lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, s)],
        services=[SERVICE_NAME],
    )
    # grpc's HealthServicer starts "" as SERVING; nothing is proven yet.
    await set_serving(health_servicer, [SERVICE_NAME], False)
    await server.start()
    log.info("listening; waiting for the canary", extra={"fields": _fields(settings)})
    model = catalog.resolve(CANARY_MODEL, GENERATE)
    serving = asyncio.create_task(_become_serving(settings, triton, model, health_servicer))
    return Running(server, health_servicer, triton, serving)


async def _become_serving(
    settings: Settings,
    triton: TritonClient,
    model: Model,
    health_servicer: HealthServicer,
) -> None:
    attempts = await canary.wait_until_healthy(triton, model)
    await set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("ready", extra={"fields": {**_fields(settings), "canary_attempts": attempts}})


def _fields(settings: Settings) -> dict[str, object]:
    return {"port": settings.port, "triton": settings.triton_grpc}


async def serve(settings: Settings) -> None:
    running = await start(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("stopping", extra={"fields": {"grace_s": settings.shutdown_grace_s}})
    await running.stop(settings.shutdown_grace_s)
    log.info("stopped")


def main() -> None:
    settings = Settings.from_env(os.environ)
    telemetry.setup("inference", settings.log_level)
    telemetry.serve_metrics(settings.metrics_port)
    asyncio.run(serve(settings))
