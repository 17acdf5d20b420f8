"""Run as a process of its own (instrumentation patches modules for good): sets telemetry up
as a service's main() does, then makes one of each instrumented call under a root span."""

from __future__ import annotations

import asyncio
import sys

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from valkey.asyncio import Valkey

from switchboard.common import grpcserver, telemetry


async def _http_server() -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def probe(grpc_port: int, valkey_url: str) -> None:
    server, _ = grpcserver.build_server(f"127.0.0.1:{grpc_port}", [], [])
    await server.start()
    http, http_port = await _http_server()
    valkey = Valkey.from_url(valkey_url)
    tracer = trace.get_tracer("probe")
    with tracer.start_as_current_span("probe-root"):
        telemetry.job_id_var.set("job-probe")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        async with httpx.AsyncClient() as client:
            (await client.get(f"http://127.0.0.1:{http_port}/hook")).raise_for_status()
        await valkey.set("probe", "1")
        async with valkey.pipeline(transaction=True) as pipe:
            await pipe.incr("probe").get("probe").execute()
    await valkey.aclose()
    http.close()
    await server.stop(None)


def main() -> None:
    telemetry.setup("probe")
    asyncio.run(probe(int(sys.argv[1]), sys.argv[2]))
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.force_flush()


if __name__ == "__main__":
    main()
