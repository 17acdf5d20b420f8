"""Running one of our processes as a subprocess the way the launcher does, to test it whole."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..stack import free_ports

READY_TIMEOUT_S = 60.0
WORKER_READY_S = 30.0


@dataclass(frozen=True)
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    address: str
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)


def spawn(
    name: str, argv: list[str], address: str, log: Path, env: Mapping[str, str] | None = None
) -> Process:
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=None if env is None else dict(env)
        )
    return Process(name, popen, address, log)


def wait_ready(
    process: Process, ready: Callable[[], bool], timeout: float = READY_TIMEOUT_S
) -> None:
    """Polls `ready` until it holds; fails early, with the log, if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            code = process.popen.returncode
            raise RuntimeError(f"{process.name} exited {code}:\n{process.tail()}")
        if ready():
            return
        time.sleep(0.1)
    process.stop()
    raise RuntimeError(f"{process.name} not ready after {timeout:.0f} s:\n{process.tail()}")


async def start_worker(
    temporal: str, valkey: str, inference: str, queue: str, log: Path
) -> Process:
    """A worker process (`python -m switchboard.planner.worker`) as the launcher runs it,
    polling `queue`; returns once it logged "ready"."""
    (metrics_port,) = free_ports(1)
    settings = {
        "TEMPORAL_ADDRESS": temporal,
        "VALKEY_URL": f"valkey://{valkey}/0",
        "TASK_QUEUE": queue,
        "METRICS_PORT": metrics_port,
        "INFERENCE_ADDRESS": inference,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({f"SWITCHBOARD_WORKER_{k}": str(v) for k, v in settings.items()})
    module = "switchboard.planner.worker"
    worker = spawn(module, [sys.executable, "-m", module], "", log, env)
    async with asyncio.timeout(WORKER_READY_S):
        while '"msg": "ready"' not in worker.log.read_text(errors="replace"):
            assert worker.popen.poll() is None, worker.tail()
            await asyncio.sleep(0.1)
    return worker
