"""Start-up and shutdown: health follows the canary; the real process serves and stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.inference.breaker import State
from switchboard.inference.servicer import SERVICE_NAME

from ..stack import free_ports
from .support import WAIT_S, Service, TcpProxy, TritonProcess, running_service, unique

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(stub: health_pb2_grpc.HealthStub, name: str) -> int:
    response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
    return int(response.status)


@pytest.mark.asyncio
async def test_serving_once_the_canary_passed(service: Service) -> None:
    assert service.running.serving.done()
    assert await _health(service.health, "") == SERVING
    assert await _health(service.health, SERVICE_NAME) == SERVING


@pytest.mark.asyncio
async def test_not_serving_while_the_canary_cannot_pass() -> None:
    (dead_port,) = free_ports(1)
    async with running_service(f"127.0.0.1:{dead_port}", wait_serving=False) as service:
        await asyncio.sleep(0.5)  # several canary attempts
        statuses = [await _health(service.health, name) for name in ("", SERVICE_NAME)]
        assert not service.running.serving.done()

    assert statuses == [NOT_SERVING, NOT_SERVING]


async def _until_health(service: Service, status: int) -> float:
    """Seconds until health reports `status`, polled every 50 ms up to WAIT_S."""
    started = time.monotonic()
    while time.monotonic() - started < WAIT_S:
        if await _health(service.health, SERVICE_NAME) == status:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"health never became {status}")


@pytest.mark.asyncio
async def test_the_periodic_canary_follows_triton_down_and_up(
    triton_server: TritonProcess,
) -> None:
    proxy = TcpProxy(triton_server.grpc_address)
    await proxy.start()
    try:
        async with running_service(
            proxy.address, canary_interval_s=0.2, canary_timeout_s=2
        ) as service:
            assert await _health(service.health, SERVICE_NAME) == SERVING
            await proxy.cut()
            await _until_health(service, NOT_SERVING)
            assert await _health(service.health, "") == NOT_SERVING
            await proxy.start()
            await _until_health(service, SERVING)
            assert await _health(service.health, "") == SERVING
    finally:
        await proxy.cut()


async def _generates(service: Service) -> bool:
    """Whether one test-streamer generation through the service ends `done`."""
    stream, request_id = service.stream(), unique("breaker")
    stream.start(request_id, "one two")
    try:
        events = await stream.until_end(request_id)
    finally:
        stream.half_close()
        stream.call.cancel()
    return events[-1].WhichOneof("event") == "done"


@pytest.mark.asyncio
async def test_a_canary_pass_ends_the_cool_down_of_a_breaker_the_outage_opened(
    triton_server: TritonProcess,
) -> None:
    proxy = TcpProxy(triton_server.grpc_address)
    await proxy.start()
    try:
        async with running_service(
            proxy.address,
            canary_interval_s=0.2,
            canary_timeout_s=2,
            breaker_min_calls=2,
            breaker_open_s=300,
        ) as service:
            breaker = service.router.backend("test-streamer").breaker
            await proxy.cut()
            async with asyncio.timeout(WAIT_S):
                while breaker.state is not State.OPEN:  # real calls fail and open it
                    assert not await _generates(service)
            assert breaker.retry_after() > 250
            assert not await _generates(service)  # refused: CIRCUIT_OPEN

            await proxy.start()  # Triton is back; the next canary pass ends the cool-down
            await _until_health(service, SERVING)
            for _ in range(int(WAIT_S / 0.1)):  # far less than the 300 s cool-down
                if await _generates(service):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"test-streamer still refused, breaker {breaker.state}")
            # The probe call closed it (read anew: mypy narrows `breaker.state` above).
            assert service.router.backend("test-streamer").breaker.state is State.CLOSED
    finally:
        await proxy.cut()


def _wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"no {text!r} in the service log:\n{log.read_text(errors='replace')}")


async def _check_serving(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await _health(health_pb2_grpc.HealthStub(channel), SERVICE_NAME)


def test_the_process_serves_then_stops_on_sigterm(
    triton_server: TritonProcess, tmp_path: Path
) -> None:
    port, metrics_port = free_ports(2)
    env = {
        **os.environ,
        "SWITCHBOARD_INFERENCE_PORT": str(port),
        "SWITCHBOARD_INFERENCE_METRICS_PORT": str(metrics_port),
        "SWITCHBOARD_INFERENCE_TRITON_GRPC": triton_server.grpc_address,
    }
    log = tmp_path / "inference.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "switchboard.inference"], env=env, stderr=sink, stdout=sink
        )
    try:
        _wait_for_line(log, '"msg": "ready"', process)
        assert asyncio.run(_check_serving(port)) == SERVING
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert b"switchboard_inference_generations_started_total" in r.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert '"msg": "stopped"' in log.read_text()
