"""Fixtures: one real tritonserver per session, and the inference service in-process per test."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from switchboard.inference import triton_launch

from .support import Service, TritonProcess, free_ports, running_service

READY_TIMEOUT_S = 120.0
MODELS = ("test-streamer", "test-fail")


def _is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_ready(triton: TritonProcess) -> None:
    urls = [f"{triton.http_url}/v2/health/ready"]
    urls += [f"{triton.http_url}/v2/models/{name}/ready" for name in MODELS]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if triton.process.poll() is not None:
            pytest.fail(f"tritonserver exited with {triton.process.returncode}:\n{triton.tail()}")
        if all(_is_ready(url) for url in urls):
            return
        time.sleep(0.1)
    pytest.fail(f"tritonserver not ready after {READY_TIMEOUT_S:.0f} s:\n{triton.tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """The real tritonserver from nvidia-pytriton, on CPU, with our model repository."""
    layout = triton_launch.prepare(tmp_path_factory.mktemp("triton"))
    grpc_port, http_port, metrics_port = free_ports(3)
    argv = triton_launch.command(
        layout, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port
    )
    log = layout.root / "tritonserver.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, env=triton_launch.environment(os.environ), stdout=sink, stderr=subprocess.STDOUT
        )
    triton = TritonProcess(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log)
    try:
        _wait_ready(triton)
        yield triton
    finally:
        _stop(process)


@pytest_asyncio.fixture
async def service(triton_server: TritonProcess) -> AsyncIterator[Service]:
    """The inference service, serving (canary passed), test-streamer paced at 50 tokens/s."""
    async with running_service(triton_server.grpc_address) as running:
        yield running
