"""Per-request tracing and Prometheus metrics, labelled by route template, not raw path;
and admission (API key, rate limit) of every `/v1/` request before it is routed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import prometheus_client
from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.common import telemetry
from switchboard.common.errors import SwitchboardError

from .auth import CLIENT_SCOPE_KEY, Authenticator
from .errors import MalformedRequest, RateLimited, error_response
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

REQUESTS = prometheus_client.Counter(
    "switchboard_edge_http_requests_total",
    "HTTP requests answered by the edge, by method, route template and status.",
    ["method", "route", "status"],
)
SECONDS = prometheus_client.Histogram(
    "switchboard_edge_http_request_seconds",
    "Time from request to the end of the answer (the whole stream for SSE).",
    ["method", "route"],
)

# Label values from the request itself are bounded, so a scanner cannot grow the series.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"
# Probes and scrapes come every few seconds; their access lines would drown the rest.
_QUIET_ROUTES: Final = frozenset({"/healthz", "/readyz", "/metrics"})
# The API; health, metrics and the OpenAPI document need no key.
PROTECTED_PREFIX: Final = "/v1/"
_ADMITTED_TYPES: Final = frozenset({"http", "websocket"})
_WS_POLICY_VIOLATION: Final = 1008


class Observe:
    """Continues the caller's W3C trace for the request, counts and logs its answer.

    The log line replaces uvicorn's access log: it names the route template and carries
    the trace, client and job ids the endpoint set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        start = time.perf_counter()
        with telemetry.incoming_span(f"HTTP {method}", headers) as span:
            try:
                await self.app(scope, receive, observed_send)
            finally:
                # The router records the matched route in the scope on its way down.
                route = getattr(scope.get("route"), "path", UNMATCHED)
                _record(span, method, route, status, time.perf_counter() - start)


def _record(span: trace.Span, method: str, route: str, status: int, seconds: float) -> None:
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    REQUESTS.labels(method, route, str(status)).inc()
    SECONDS.labels(method, route).observe(seconds)
    fields = {"method": method, "route": route, "status": status, "seconds": round(seconds, 4)}
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    log.log(level, "request", extra={"fields": fields})


class WellFormed:
    """Refuses (400 MALFORMED_REQUEST) a query string that is not UTF-8 before anything reads
    it: Starlette's `request.url` decodes it strictly, so a page of its own (a 404, a 405, a
    redirect) would otherwise fail on it."""

    def __init__(self, app: ASGIApp, *, refusal: Refusal | None = None) -> None:
        self.app = app
        self.refusal = refusal or _google_shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in _ADMITTED_TYPES:
            try:
                scope.get("query_string", b"").decode("utf-8")
            except UnicodeDecodeError:
                error = MalformedRequest(
                    "the query string is not UTF-8 (RFC 3986 percent-encoding)"
                )
                await _refuse(self.refusal, error, {}, scope, receive, send)
                return
        await self.app(scope, receive, send)


class Admission:
    """Every `/v1/` request: the API key names the client (else 401), the client's rate
    limit admits the request (else 429), and only then is it routed.

    The client id goes into the scope (auth.authenticated_client) and the log context, and
    the RateLimit headers onto whatever answer follows, an SSE stream's included. An SSE
    stream is one request, so it counts once, when it opens."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: Authenticator,
        limiter: RateLimiter | None,
        routes: Sequence[BaseRoute],
        refusal: Refusal | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.limiter = limiter
        self.routes = routes
        self.refusal = refusal or _google_shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _ADMITTED_TYPES or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        try:
            # An event stream opened with a stream token (tokens.StreamTokenAuth, just
            # before this) arrives with its client found; it is rate-limited all the same.
            client = scope.get(CLIENT_SCOPE_KEY) or await self.auth.client_id(
                Headers(scope=scope).get("authorization")
            )
            telemetry.client_id_var.set(client)
            decision = await self.limiter.admit(client) if self.limiter else None
            if decision is not None:
                headers = decision.headers()
                if not decision.admitted:
                    wait = decision.retry_after_seconds
                    raise RateLimited(f"rate limit exceeded; retry in {wait} s")
        except SwitchboardError as exc:
            await self._refuse(exc, headers, scope, receive, send)
            return
        scope[CLIENT_SCOPE_KEY] = client
        await self.app(scope, receive, _adding(headers, send))

    async def _refuse(
        self,
        error: SwitchboardError,
        headers: Mapping[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        # The access line and metrics name the route the request would have taken.
        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE:
                scope["route"] = route
                break
        await _refuse(self.refusal, error, headers, scope, receive, send)


# Writes a refusal; the OpenAI-compatible routes answer in OpenAI's error shape instead.
Refusal = Callable[[Scope, SwitchboardError, Mapping[str, str]], Response]


async def _refuse(
    refusal: Refusal,
    error: SwitchboardError,
    headers: Mapping[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    if scope["type"] == "websocket":
        # Closing before the accept refuses the handshake (HTTP 403).
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": _WS_POLICY_VIOLATION})
        return
    await refusal(scope, error, headers)(scope, receive, send)


def _google_shape(scope: Scope, error: SwitchboardError, headers: Mapping[str, str]) -> Response:
    return error_response(error, headers)


def _adding(headers: Mapping[str, str], send: Send) -> Send:
    if not headers:
        return send
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *raw]}
        await send(message)

    return sending
