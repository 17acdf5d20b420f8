"""gRPC servers built one way: errors, trace context, metrics, health and reflection.

`ServiceInterceptor` wraps every handler once: it continues the caller's W3C trace, counts
the call, and turns a `SwitchboardError` into `google.rpc.Status` + `ErrorInfo`. Anything
else becomes INTERNAL with a generic message; the details go to the log with the trace id.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from . import telemetry
from .errors import SwitchboardError, internal_status, to_rpc_status

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]
# RpcMethodHandler's behaviours; exactly one is set.
_KINDS: Final = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_STREAMING: Final = frozenset({"unary_stream", "stream_stream"})
if TYPE_CHECKING:  # generic only in the stubs, not at run time
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]


def _failure(method: str, exc: BaseException) -> status_pb2.Status:
    if isinstance(exc, SwitchboardError):
        log.info("call failed", extra={"fields": {"method": method, "reason": exc.reason}})
        return exc.to_status()
    log.exception("unexpected error", extra={"fields": {"method": method}})
    return internal_status()


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        headers = {k: v for k, v in details.invocation_metadata or () if isinstance(v, str)}
        kind = next(k for k in _KINDS if getattr(handler, k) is not None)
        behavior = getattr(handler, kind)
        # grpc.aio runs a streaming handler that is a coroutine function (it writes with
        # `context.write`, as the aio health servicer's Watch does) differently from an async
        # generator, by the function's kind: the wrapper must be of the same kind.
        if kind in _STREAMING and not inspect.iscoroutinefunction(behavior):
            wrapped = _wrap_stream(behavior, method, headers)
        else:
            wrapped = _wrap_call(behavior, method, headers)
        # RpcMethodHandler is a namedtuple at run time; the stubs do not say so.
        return cast("Handler", handler._replace(**{kind: wrapped}))  # type: ignore[attr-defined]


async def _abort(context: Context, method: str, exc: BaseException) -> None:
    rich = to_rpc_status(_failure(method, exc))
    telemetry.GRPC_REQUESTS.labels(method, rich.code.name).inc()
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


def _wrap_call(behavior: Behavior, method: str, headers: dict[str, str]) -> Behavior:
    """A unary handler, or a streaming one that writes its replies itself (returns None)."""

    async def call(request: Any, context: Context) -> Any:
        with telemetry.incoming_span(method, headers), telemetry.timed(method):
            try:
                response = await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - the one place errors become statuses
                await _abort(context, method, exc)
            telemetry.GRPC_REQUESTS.labels(method, "OK").inc()
            return response

    return call


def _wrap_stream(behavior: Behavior, method: str, headers: dict[str, str]) -> Behavior:
    """A streaming handler that yields its replies (an async generator)."""

    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        with telemetry.incoming_span(method, headers), telemetry.timed(method):
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - the one place errors become statuses
                await _abort(context, method, exc)
            telemetry.GRPC_REQUESTS.labels(method, "OK").inc()

    return call


def build_server(
    address: str,
    register: Iterable[Callable[[grpc.aio.Server], None]],
    services: Sequence[str],
    *,
    reflected: Sequence[str] = (),
) -> tuple[grpc.aio.Server, HealthServicer]:
    """A server with our interceptor, the standard health service and reflection.

    `services` are the full names this server implements (marked SERVING in health once
    the caller says so); `reflected` adds names reflection should also describe.
    """
    server = grpc.aio.server(interceptors=[ServiceInterceptor()])
    for add in register:
        add(server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*services, *reflected, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind {address}")
    return server, health_servicer


async def set_serving(
    health_servicer: HealthServicer, services: Sequence[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *services):
        await health_servicer.set(name, status)
