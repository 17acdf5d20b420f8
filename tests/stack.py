"""Starting stacks for tests with the launcher itself (`switchboard up`), and free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from switchboard.launcher.ports import Ports

READY_TIMEOUT = 600.0


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


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_stack(state_dir: Path, ports: Ports, only: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`switchboard up` in the background; returns once every process is ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "switchboard.cli", "up", "--no-ui"]
    argv += ["--base-port", str(ports.base), "--state-dir", str(state_dir)]
    if only:
        argv += ["--only", ",".join(only)]
    with (state_dir / "up.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        state = _state(state_dir)
        if state.get("state") == "ready":
            return proc
        if proc.poll() is not None or state.get("state") in ("stopping", "stopped"):
            break
        time.sleep(0.2)
    stop_stack(proc)
    logs = "\n".join(
        f"--- {p.name}\n{_tail(p)}" for p in sorted((state_dir / "logs").glob("*.log"))
    )
    pytest.fail(f"stack did not come up:\n{_tail(state_dir / 'up.log')}\n{logs}")


def _state(state_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stop_stack(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
