"""Run as a process of its own (instrumentation patches modules for good): sets telemetry up
as a service's main() does, then makes one of each instrumented call under a root span."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from valkey.asyncio import Valkey

from switchboard.common import grpcserver, telemetry

ECHO = "probe.Echo"


async def _http_server() -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _echo(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def _ticks(request: bytes, context: object) -> AsyncIterator[bytes]:
    while True:
        yield request
        await asyncio.sleep(0.05)


def _register_echo(server: grpc.aio.Server) -> None:
    chat = grpc.stream_stream_rpc_method_handler(_echo)
    ticks = grpc.unary_stream_rpc_method_handler(_ticks)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(ECHO, {"Chat": chat, "Ticks": ticks}),)
    )


async def _watch(channel: grpc.aio.Channel) -> None:
    """A response stream read with read() and cancelled, as the edge leaves a WatchJob
    (nobody awaits its status)."""
    call = channel.unary_stream(f"/{ECHO}/Ticks", lambda b: b, lambda b: b)(b"tick")
    assert await call.read() == b"tick"
    assert call.cancel()


async def _chat(channel: grpc.aio.Channel) -> object:
    """A bidirectional call driven as the worker drives Generate: write, read, stop; the
    call is returned so that it stays referenced while the spans are flushed."""
    call = channel.stream_stream(f"/{ECHO}/Chat", lambda b: b, lambda b: b)(None)
    await call.write(b"hello")
    assert await call.read() == b"hello"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    return call


def _flush() -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.force_flush()


async def probe(grpc_port: int, valkey_url: str) -> None:
    server, _ = grpcserver.build_server(f"127.0.0.1:{grpc_port}", [_register_echo], [])
    await server.start()
    http, http_port = await _http_server()
    valkey = Valkey.from_url(valkey_url)
    tracer = trace.get_tracer("probe")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    with tracer.start_as_current_span("probe-root"):
        telemetry.job_id_var.set("job-probe")
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        chat = await _chat(channel)
        await _watch(channel)
        async with httpx.AsyncClient() as client:
            (await client.get(f"http://127.0.0.1:{http_port}/hook")).raise_for_status()
        await valkey.set("probe", "1")
        async with valkey.pipeline(transaction=True) as pipe:
            await pipe.incr("probe").get("probe").execute()
    # What a long-running process has exported by now, not what its exit flushes: the
    # test takes its snapshot of the receiver here.
    _flush()
    print("flushed", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    del chat
    await channel.close(None)
    await valkey.aclose()
    http.close()
    await server.stop(None)


def main() -> None:
    telemetry.setup("probe")
    asyncio.run(probe(int(sys.argv[1]), sys.argv[2]))
    _flush()


if __name__ == "__main__":
    main()
