"""Composition root of the inference service: `python -m switchboard.inference`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common import telemetry
from switchboard.common.grpcserver import build_server, set_serving

from . import canary
from .breaker import Breaker, BreakerConfig, State
from .config import Settings
from .generation import Limits
from .models import EMBED, GENERATE, OCR, Catalog, Route, default_catalog
from .routing import Bounds, Router
from .servicer import SERVICE_NAME, InferenceServicer, Options
from .triton import TritonClient
from .unary import RetryPolicy, UnaryCaller

log = logging.getLogger(__name__)

# grpc_health's stubs do not describe its asyncio servicer.
HealthServicer = Any


@dataclass
class Running:
    """A started server; `serving` completes once the canary first passed."""

    server: grpc.aio.Server
    health: HealthServicer
    triton: TritonClient
    router: Router
    serving: asyncio.Future[None]
    canary: asyncio.Task[None]

    async def stop(self, grace_s: float) -> None:
        self.canary.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.canary
        await set_serving(self.health, [SERVICE_NAME], False)
        # In-flight streams get the grace period; then their generations are cancelled,
        # which cancels their Triton streams, before the channel to Triton closes.
        await self.server.stop(grace_s)
        await self.triton.close()


def build_router(settings: Settings, catalog: Catalog) -> Router:
    breaker = BreakerConfig(
        window_calls=settings.breaker_window_calls,
        window_s=settings.breaker_window_s,
        failure_ratio=settings.breaker_failure_ratio,
        min_calls=settings.breaker_min_calls,
        open_s=settings.breaker_open_s,
    )
    bounds = {
        GENERATE: Bounds(settings.max_concurrent_generations, settings.max_queued_generations),
        EMBED: Bounds(settings.max_concurrent_embeds, settings.max_queued_embeds),
        OCR: Bounds(settings.max_concurrent_ocr, settings.max_queued_ocr),
    }
    return Router(catalog, breaker, bounds, queue_retry_after_s=settings.queue_retry_after_s)


def build_servicer(settings: Settings, router: Router, triton: TritonClient) -> InferenceServicer:
    limits = Limits(
        first_token_s=settings.first_token_timeout_s,
        total_s=settings.generation_timeout_s,
        inter_token_s=settings.inter_token_timeout_s,
    )
    options = Options(
        limits, settings.embed_timeout_s, settings.extract_text_timeout_s, settings.embed_chunk_size
    )
    policy = RetryPolicy(
        settings.unary_retries, settings.retry_backoff_s, settings.retry_max_backoff_s
    )
    return InferenceServicer(router, triton, UnaryCaller(router, policy), options)


async def start(settings: Settings, catalog: Catalog | None = None) -> Running:
    """Builds and starts everything; health stays NOT_SERVING until the canary passes."""
    triton = TritonClient(settings.triton_grpc)
    catalog = catalog or default_catalog(
        test_models=settings.test_models,
        test_streamer_tokens_per_second=settings.test_streamer_tokens_per_second,
    )
    routes = [catalog.route(name) for name in settings.canary_route_names]
    router = build_router(settings, catalog)
    servicer = build_servicer(settings, router, triton)
    server, health_servicer = build_server(
        f"{settings.host}:{settings.port}",
        register=[lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, s)],
        services=[SERVICE_NAME],
    )
    # grpc's HealthServicer starts "" as SERVING; nothing is proven yet.
    await set_serving(health_servicer, [SERVICE_NAME], False)
    await server.start()
    log.info("listening; waiting for the canary", extra={"fields": _fields(settings)})
    serving = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_health(settings, triton, router, routes, health_servicer, serving))
    return Running(server, health_servicer, triton, router, serving, task)


async def _health(
    settings: Settings,
    triton: TritonClient,
    router: Router,
    routes: list[Route],
    health_servicer: HealthServicer,
    serving: asyncio.Future[None],
) -> None:
    """SERVING once the canary passes; then the periodic canary keeps health honest."""
    try:
        attempts, served = await canary.wait_until_healthy(
            triton, routes, timeout_s=settings.canary_timeout_s
        )
        await set_serving(health_servicer, [SERVICE_NAME], True)
        serving.set_result(None)
        fields = {**_fields(settings), "canary_attempts": attempts, "canary": served}
        log.info("ready", extra={"fields": fields})

        async def on_change(healthy: bool) -> None:
            await set_serving(health_servicer, [SERVICE_NAME], healthy)

        await canary.watch(
            triton,
            routes,
            on_change,
            interval_s=settings.canary_interval_s,
            timeout_s=settings.canary_timeout_s,
            fresh=lambda m: _fresh(router.backend(m.name).breaker, settings.canary_interval_s),
            on_pass=lambda served: probe_passed(router, served.values()),
        )
    finally:
        serving.cancel()  # a no-op once it has passed


def _fresh(breaker: Breaker, interval_s: float) -> bool:
    """Real traffic just proved the model, and its breaker is not OPEN: an OPEN breaker's
    model is probed, so that a pass can end its cool-down (`probe_passed`)."""
    return breaker.state is not State.OPEN and breaker.succeeded_within(interval_s)


def probe_passed(router: Router, models: Iterable[str]) -> None:
    """The canary has just seen these models answer: an OPEN breaker among them lets its
    probe call through now, instead of refusing the model for the rest of its cool-down
    (Triton restarted and serves again)."""
    for model in set(models):
        if router.backend(model).breaker.probe_now():
            log.info("breaker half-open: the canary passed", extra={"fields": {"model": model}})


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
    telemetry.serve_metrics(settings.metrics_port, settings.host)
    asyncio.run(serve(settings))
