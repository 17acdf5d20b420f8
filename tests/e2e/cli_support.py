"""Driving `switchboard` as a user does: as a subprocess, on a pseudo-terminal for the
interactive commands, and through a TCP proxy the test can cut to drop a connection."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "switchboard.cli", *args]


@dataclass
class Terminal:
    """A command on a pty of its own (its controlling terminal: ^C there is SIGINT)."""

    pid: int
    fd: int
    seen: str = ""

    @classmethod
    def spawn(cls, args: list[str], env: dict[str, str]) -> Terminal:
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once
            os.execve(args[0], args, env)
        return cls(pid, fd)

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 60.0, start: int = 0) -> int:
        """Reads until `pattern` (a regex) shows in the output after offset `start` (escape
        codes removed); the offset just past the match."""
        deadline = time.monotonic() + timeout
        while not (found := re.compile(pattern).search(self.seen, start)):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no {pattern!r} in output:\n{self.seen[start:]}")
        return found.end()

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the child exited and the pty closed
            return False
        self.seen += ANSI.sub("", chunk.decode(errors="replace"))
        return bool(chunk)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"still running after {timeout} s:\n{self.seen}")


@dataclass
class CuttableProxy:
    """Forwards TCP connections to `target`; `cut()` drops every open one, as a flaky
    network or a dying load balancer would."""

    target: int
    port: int = 0
    connections: int = 0
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self.connections += 1
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            src.close()  # each socket is the source of one pump: closed once

    def cut(self) -> None:
        with self._lock:
            dropped, self._open = self._open, []
        for s in dropped:  # their pumps see the end and close them
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        self.cut()
