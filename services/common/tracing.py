"""Span export over OTLP and the client-side instrumentation that feeds it.

Nothing here runs unless an OTLP endpoint is configured (the standard
`OTEL_EXPORTER_OTLP_ENDPOINT`): without one the processes keep propagating W3C context and
logging trace ids, and pay nothing for spans nobody reads.

The gRPC client (our stubs, and Triton's client, which opens its channel through
`grpc.aio.insecure_channel`) and httpx (Chroma's client, webhooks) use the maintained
OpenTelemetry instrumentations, but for bidirectional streams (see `grpcspans`). Valkey has
none that installs beside ours: the Redis instrumentation imports `redis` and checks
`isinstance` against its classes, and the external Valkey one pins an older instrumentation
release than the SDK we run; so `valkey_spans` wraps the two methods every command goes
through with a CLIENT span named after the command.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_ATTRIBUTE = "switchboard.service"
JOB_ATTRIBUTE = "switchboard.job_id"
CLIENT_ATTRIBUTE = "switchboard.client_id"

Attributes = Callable[[], Mapping[str, str]]
_installed: list[str] = []


class ProcessAttributes(SpanProcessor):
    """Puts the process's name and the job and client being worked on onto every span.

    Receivers list spans, not resources: the name says which hop a span is, and the job id
    is how `switchboard trace <job>` finds a job's traces."""

    def __init__(self, service: str, current: Attributes) -> None:
        self.service = service
        self.current = current

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        span.set_attribute(SERVICE_ATTRIBUTE, self.service)
        for key, value in self.current().items():
            span.set_attribute(key, value)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def exporting(environ: Mapping[str, str]) -> bool:
    return bool(environ.get(ENDPOINT_ENV, "").strip())


def install(
    provider: TracerProvider,
    service: str,
    current: Attributes,
    exporter: SpanExporter | None = None,
) -> None:
    """Batches spans to `exporter` (OTLP/gRPC to the configured endpoint when not given) and
    turns on the client instrumentations once per process."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(ProcessAttributes(service, current))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrument_clients()


def instrument_clients() -> None:
    """gRPC client, httpx and Valkey spans; idempotent (the instrumentors patch modules)."""
    if _installed:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from . import grpcspans

    grpcspans.instrument()
    HTTPXClientInstrumentor().instrument()
    _installed.extend(["grpc", "httpx"])
    if valkey_spans():
        _installed.append("valkey")


def instrumented() -> tuple[str, ...]:
    return tuple(_installed)


def valkey_spans() -> bool:
    """Wraps `execute_command` and pipeline `execute` of valkey's asyncio client; False when
    valkey-py is not installed in this process."""
    try:
        from valkey.asyncio import client as valkey_client
    except ImportError:
        return False
    tracer = trace.get_tracer("switchboard.valkey")
    cls: Any = valkey_client.Valkey
    pipeline: Any = valkey_client.Pipeline
    cls.execute_command = _traced(tracer, cls.execute_command, _command_name)
    pipeline.execute = _traced(tracer, pipeline.execute, _pipeline_name)
    return True


def _command_name(args: tuple[Any, ...]) -> str:
    return str(args[1]).split(" ")[0].upper() if len(args) > 1 else "COMMAND"


def _pipeline_name(args: tuple[Any, ...]) -> str:
    stack = getattr(args[0], "command_stack", ()) if args else ()
    return f"MULTI {len(stack)}" if getattr(args[0], "is_transaction", False) else "PIPELINE"


def _traced(
    tracer: trace.Tracer,
    method: Callable[..., Awaitable[Any]],
    name: Callable[[tuple[Any, ...]], str],
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        operation = name(args)
        with tracer.start_as_current_span(operation, kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("db.system.name", "valkey")
            span.set_attribute("db.operation.name", operation)
            return await method(*args, **kwargs)

    return call
