"""Client spans for every gRPC call a process makes over `grpc.aio` channels.

Unary-unary and stream-unary calls get the maintained OpenTelemetry interceptors. Calls with
a response stream do not: the maintained interceptors hand back a generator over the
responses and end their span from inside it, so the span's end depends on how the caller
reads. The worker's `Generate`, a bidirectional call driven with `write()`/`read()`, never
got its span ended or exported, and the inference span under it pointed at a parent no
receiver had; a `WatchJob` the edge cancels ends without its status. `UnaryStreamSpans` and
`StreamStreamSpans` end the span from the call's done callback, with its status code,
however the call was read or left.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors

Channel = Callable[..., grpc.aio.Channel]
_finishing: set[asyncio.Task[None]] = set()


class _CallSpans:
    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    async def _traced(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        service, _, name = method.lstrip("/").rpartition("/")
        span = self.tracer.start_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        for key, value in carrier.items():
            metadata[key] = value  # replaces a traceparent the caller injected itself
        try:
            call = await continuation(details._replace(metadata=metadata), request)
        except Exception as exc:
            _fail(span, exc)
            span.end()
            raise
        call.add_done_callback(functools.partial(_done, span))
        return call


class UnaryStreamSpans(_CallSpans, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return await self._traced(continuation, details, request)


class StreamStreamSpans(_CallSpans, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return await self._traced(continuation, details, request_iterator)


def _done(span: trace.Span, call: grpc.aio.Call) -> None:
    # A done callback cannot await; the call is over, so its code is there at once.
    task = asyncio.get_running_loop().create_task(_finish(span, call))
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


async def _finish(span: trace.Span, call: grpc.aio.Call) -> None:
    try:
        code = await call.code()
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code != grpc.StatusCode.OK:
            span.set_status(trace.StatusCode.ERROR, await call.details())
    finally:
        span.end()


def _fail(span: trace.Span, exc: Exception) -> None:
    if isinstance(exc, grpc.RpcError):
        span.set_attribute("rpc.grpc.status_code", exc.code().value[0])
    span.record_exception(exc)
    span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")


def interceptors() -> list[grpc.aio.ClientInterceptor]:
    streams = (grpc.aio.UnaryStreamClientInterceptor, grpc.aio.StreamStreamClientInterceptor)
    maintained = [
        i
        for i in aio_client_interceptors()  # type: ignore[no-untyped-call]
        if not isinstance(i, streams)
    ]
    tracer = trace.get_tracer("switchboard.grpc")
    return [*maintained, UnaryStreamSpans(tracer), StreamStreamSpans(tracer)]


def instrument() -> None:
    """Every `grpc.aio` channel opened from now on carries the span interceptors first."""
    grpc.aio.insecure_channel = _with_spans(grpc.aio.insecure_channel)
    grpc.aio.secure_channel = _with_spans(grpc.aio.secure_channel)


def _with_spans(open_channel: Channel) -> Channel:
    @functools.wraps(open_channel)
    def opened(*args: Any, **kwargs: Any) -> grpc.aio.Channel:
        kwargs["interceptors"] = [*interceptors(), *(kwargs.get("interceptors") or ())]
        return open_channel(*args, **kwargs)

    return opened
