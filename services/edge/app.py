"""The Starlette app: derived REST routes, health, metrics, OpenAPI, one error shape.

The lifespan owns the one gRPC channel to the planner and hands it to requests in the
typed `EdgeState`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import prometheus_client
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.common.errors import InvalidArgument, SwitchboardError

from .auth import ApiKeys
from .config import Settings
from .errors import MethodNotAllowed, RouteNotFound, error_response, internal_error
from .handlers import EdgeRequest, EdgeState, starlette_routes
from .middleware import Observe
from .openapi import document
from .planner import Planner
from .routes import job_routes

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, draining: asyncio.Event | None = None) -> Starlette:
    """`draining`, once set, ends open SSE streams so a shutdown need not wait them out."""
    keys = ApiKeys.parse(settings.api_keys)
    if not keys:
        log.warning("no API keys configured; every /v1 request will get 401")
    table = job_routes()
    openapi_doc = document(table)
    drain = draining if draining is not None else asyncio.Event()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[EdgeState]:
        planner = Planner(settings.planner_address)
        try:
            yield EdgeState(
                planner=planner,
                keys=keys,
                routes=table,
                heartbeat_seconds=settings.heartbeat_seconds,
                draining=drain,
            )
        finally:
            await planner.close()

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_doc)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *starlette_routes(table),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Observe)],
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan,
    )


async def healthz(request: Request) -> Response:
    # Liveness only: Envoy must keep routing here even while the planner is away.
    return JSONResponse({"status": "ok"})


async def readyz(request: EdgeRequest) -> Response:
    planner = request.state["planner"]
    status = await planner.health()
    code = 200 if status == "SERVING" else 503
    return JSONResponse({"status": "ok" if code == 200 else "unavailable", "planner": status}, code)


async def metrics(request: Request) -> Response:
    latest = prometheus_client.generate_latest()
    return Response(latest, media_type=prometheus_client.CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, wrong verb) in the same error shape."""
    if not isinstance(exc, HTTPException):
        return await unexpected_error(request, exc)
    error: SwitchboardError
    if exc.status_code == 404:
        error = RouteNotFound(f"no route for {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    elif exc.status_code < 500:
        error = InvalidArgument(exc.detail, reason=f"HTTP_{exc.status_code}")
    else:
        error = internal_error()
    return error_response(error, exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # Endpoints catch their own failures; this is for the framework's, logged by Starlette.
    return error_response(internal_error())
