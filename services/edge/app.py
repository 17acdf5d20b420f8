"""The Starlette app: derived REST routes, the OpenAI-compatible routes and chat socket,
health, metrics, OpenAPI and /docs; the Google error shape, OpenAI's on OpenAI's routes.

The lifespan owns the one gRPC channel to the planner and the one to the inference service
and hands them to requests in the typed state (`AppState`: the job API's `JobApiState` and
the OpenAI package's `InteractiveState`, both over the neutral `state.EdgeState`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import prometheus_client
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from valkey.asyncio import Valkey

from switchboard.common.errors import InvalidArgument, SwitchboardError

from . import apidocs
from .auth import ApiKeys, Authenticator
from .config import Settings
from .errors import MethodNotAllowed, RouteNotFound, internal_error
from .handlers import EdgeRequest, JobApiState, starlette_routes
from .hub import Hub
from .keys import KeyStore
from .middleware import Admission, Observe, WellFormed
from .openai.endpoints import InteractiveState, openai_routes, refusal
from .openai.inference import Inference
from .openai.schema import add_openai
from .openai.websocket import chat_socket
from .openapi import document
from .planner import Planner
from .ratelimit import RateLimiter
from .routes import RouteTable, job_routes
from .streams import StreamSlots
from .tokens import StreamTokenAuth, StreamTokens

log = logging.getLogger(__name__)

# A request waits at most this long on Valkey (keys, rate limits) before it fails over.
VALKEY_TIMEOUT_SECONDS = 1.0
# What a page may send beyond the safelisted headers, and read beyond the safelisted ones.
CORS_REQUEST_HEADERS = [
    "Authorization", "Content-Type", "Idempotency-Key", "Prefer", "Last-Event-ID",
    "If-None-Match", "traceparent",
]  # fmt: skip
CORS_RESPONSE_HEADERS = [
    "Location", "ETag", "Retry-After", "Preference-Applied", "Link", "RateLimit-Limit",
    "RateLimit-Remaining", "RateLimit-Reset",
]  # fmt: skip


@dataclass(frozen=True)
class _Parts:
    """What the app builds once at start-up and every request shares through the state."""

    settings: Settings
    keys: ApiKeys
    table: RouteTable
    tokens: StreamTokens
    streams: StreamSlots
    draining: asyncio.Event
    valkey: Valkey | None


class AppState(JobApiState, InteractiveState):
    """What the lifespan yields: the job API's state and the OpenAI package's together."""


def create_app(settings: Settings, *, draining: asyncio.Event | None = None) -> Starlette:
    """`draining`, once set, ends open SSE streams so a shutdown need not wait them out."""
    keys = ApiKeys.parse(settings.api_keys)
    valkey = _valkey(settings)
    auth = Authenticator(
        keys, KeyStore(valkey) if valkey else None, cache_seconds=settings.key_cache_seconds
    )
    limiter = RateLimiter(valkey, settings.rate_limits) if valkey else None
    streams = StreamSlots(valkey, settings.max_streams_per_client, settings.stream_lease_seconds)
    if not keys and not valkey:
        log.warning("no API keys configured; every /v1 request will get 401")
    table = job_routes()
    routes = _routes(table)
    drain = draining if draining is not None else asyncio.Event()
    tokens = StreamTokens.from_settings(settings)
    parts = _Parts(settings, keys, table, tokens, streams, drain, valkey)
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(Observe),
            Middleware(WellFormed, refusal=refusal),
            *_cors(settings.cors_origins),
            Middleware(StreamTokenAuth, tokens=tokens, watch=table.by_rpc["WatchJob"]),
            Middleware(Admission, auth=auth, limiter=limiter, routes=routes, refusal=refusal),
        ],
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        lifespan=_lifespan(parts),
    )


def _lifespan(parts: _Parts) -> Callable[[Starlette], AbstractAsyncContextManager[AppState]]:
    """Opens the one gRPC channel to the planner and the one to the inference service, and
    hands them to requests in the typed state; closes everything on the way out."""
    settings = parts.settings

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        planner = Planner(settings.planner_address, settings.internal_token)
        hub = Hub(planner)
        inference = Inference(settings.inference_address)
        renewing = asyncio.create_task(parts.streams.renew_forever())
        try:
            yield AppState(
                planner=planner,
                keys=parts.keys,
                routes=parts.table,
                heartbeat_seconds=settings.heartbeat_seconds,
                draining=parts.draining,
                hub=hub,
                tokens=parts.tokens,
                max_wait_seconds=settings.max_wait_seconds,
                sse_max_seconds=settings.sse_max_seconds,
                inference=inference,
                streams=parts.streams,
            )
        finally:
            renewing.cancel()
            await hub.close()
            await parts.streams.close()
            await planner.close()
            await inference.close()
            if parts.valkey is not None:
                await parts.valkey.aclose()

    return lifespan


def _routes(table: RouteTable) -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *_document_routes(table),
        *starlette_routes(table),
        *openai_routes(),
        WebSocketRoute("/v1/chat/ws", chat_socket),
    ]


def _document_routes(table: RouteTable) -> list[BaseRoute]:
    """`/openapi.json` and `/docs`, rendered once: the routes cannot change while it runs."""
    openapi_doc = add_openai(document(table))
    docs_page = apidocs.render(openapi_doc)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_doc)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page)

    return [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]


def _cors(origins: tuple[str, ...]) -> list[Middleware]:
    """CORS for the configured browser origins, outside Admission: a preflight carries no
    credentials, and a refusal must still be readable by the page."""
    if not origins:
        return []
    cors = Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=CORS_REQUEST_HEADERS,
        expose_headers=CORS_RESPONSE_HEADERS,
        max_age=600,
    )
    return [cors]


def _valkey(settings: Settings) -> Valkey | None:
    if not settings.valkey_url:
        log.warning("no VALKEY_URL: API keys only from API_KEYS, and no rate limits")
        return None
    client: Valkey = Valkey.from_url(
        settings.valkey_url,
        socket_timeout=VALKEY_TIMEOUT_SECONDS,
        socket_connect_timeout=VALKEY_TIMEOUT_SECONDS,
    )
    return client


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
    return refusal(request.scope, error, exc.headers or {})


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # Endpoints catch their own failures; this is for the framework's, logged by Starlette.
    return refusal(request.scope, internal_error(), {})
