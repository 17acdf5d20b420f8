"""JSON logs that carry the trace and job, W3C trace context, Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import prometheus_client
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from . import tracing

job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")
client_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("client_id", default="")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; trace_id, job_id and client_id when there are any."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key, var in (("job_id", job_id_var), ("client_id", client_id_var)):
            if value := var.get():
                entry[key] = value
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(service: str, level: str = "INFO", environ: Mapping[str, str] | None = None) -> None:
    """Called once from each process's main(): logging, and a tracer that makes real ids.

    With `OTEL_EXPORTER_OTLP_ENDPOINT` set (the standard variable; the OTLP exporter reads
    its other `OTEL_*` settings itself) spans are batched to that receiver and the gRPC
    client, httpx and Valkey calls get spans of their own (`tracing`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if tracing.exporting(os.environ if environ is None else environ):
        tracing.install(provider, service, current_ids)
    trace.set_tracer_provider(provider)


def current_ids() -> dict[str, str]:
    """The job and client this task works for, as span attributes (empty when none)."""
    ids = {tracing.JOB_ATTRIBUTE: job_id_var.get(), tracing.CLIENT_ATTRIBUTE: client_id_var.get()}
    return {key: value for key, value in ids.items() if value}


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """/metrics on `host`: loopback locally; the pod's address in a cluster, for Prometheus."""
    prometheus_client.start_http_server(port, addr=host)


def inject(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """W3C `traceparent` (and `tracestate`) for an outgoing call."""
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier


def trace_metadata(*extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (*inject().items(), *extra)


@contextmanager
def incoming_span(
    name: str, headers: Mapping[str, str], kind: trace.SpanKind = trace.SpanKind.SERVER
) -> Iterator[trace.Span]:
    """Continues the caller's trace (or starts one) for the duration of a request."""
    token = otel_context.attach(propagate.extract(dict(headers)))
    try:
        with trace.get_tracer("switchboard").start_as_current_span(name, kind=kind) as span:
            yield span
    finally:
        otel_context.detach(token)


GRPC_REQUESTS = prometheus_client.Counter(
    "switchboard_grpc_requests_total",
    "gRPC calls handled, by method and status code.",
    ["method", "code"],
)
GRPC_SECONDS = prometheus_client.Histogram(
    "switchboard_grpc_request_seconds",
    "Time from call start to its end (whole stream for streams).",
    ["method"],
)


@contextmanager
def timed(method: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        GRPC_SECONDS.labels(method).observe(time.perf_counter() - start)
