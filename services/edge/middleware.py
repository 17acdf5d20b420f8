"""Per-request tracing and Prometheus metrics, labelled by route template, not raw path."""

from __future__ import annotations

import logging
import time
from typing import Final

import prometheus_client
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.common import telemetry

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
