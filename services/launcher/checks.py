"""Readiness checks: each asks the process the way its clients will, not just "port open"."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

Check = Callable[[], Awaitable[bool]]


def http_ok(url: str) -> Check:
    async def check() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def chroma_heartbeat(port: int) -> Check:
    """Chroma's heartbeat answers with its clock, which only a serving frontend does."""

    async def check() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                reply = await client.get(f"http://127.0.0.1:{port}/api/v2/heartbeat")
                return reply.status_code == 200 and "nanosecond heartbeat" in reply.json()
        except (httpx.HTTPError, ValueError):
            return False

    return check


def grpc_serving(address: str, service: str = "") -> Check:
    async def check() -> bool:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return check


def valkey_pong(port: int) -> Check:
    async def check() -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=2
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return await asyncio.wait_for(reader.readline(), timeout=2) == b"+PONG\r\n"
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    return check
