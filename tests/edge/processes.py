"""Edges as real processes (`python -m switchboard.edge`), each with its log in a file: for
tests that need several replicas on one Valkey, or the lines a process really logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..stack import free_ports

START_SECONDS = 30.0


@dataclass
class EdgeProcess:
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def entries(self) -> list[dict[str, object]]:
        """The JSON log lines written so far."""
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def spawn_edge(log: Path, env: Mapping[str, str]) -> EdgeProcess:
    """An edge on a free port with `env` (SWITCHBOARD_EDGE_*) over this environment."""
    (port,) = free_ports(1)
    full = {**os.environ, "SWITCHBOARD_EDGE_PORT": str(port), **env}
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            [sys.executable, "-m", "switchboard.edge"], env=full, stdout=sink, stderr=sink
        )
    return EdgeProcess(popen, port, log)


async def healthy(edge: EdgeProcess) -> None:
    """Returns once the edge answers /healthz; fails with its log if it dies first."""
    async with asyncio.timeout(START_SECONDS), httpx.AsyncClient(timeout=1) as http:
        while True:
            if edge.popen.poll() is not None:
                raise RuntimeError(f"edge exited {edge.popen.returncode}:\n{edge.text()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{edge.url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def edges(
    tmp_path: Path, env: Mapping[str, str], count: int = 1
) -> AsyncIterator[list[EdgeProcess]]:
    """`count` edge processes with the same settings, stopped on the way out."""
    started: list[EdgeProcess] = []
    try:
        started.extend(spawn_edge(tmp_path / f"edge-{n}.log", env) for n in range(count))
        await asyncio.gather(*(healthy(edge) for edge in started))
        yield started
    finally:
        for edge in started:
            edge.stop()
