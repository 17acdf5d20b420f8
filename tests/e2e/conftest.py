"""One real mesh per test session, started by the same launcher as `switchboard up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchboard.launcher.ports import Ports, free_block

API_KEY = "sb-dev-key"
READY_TIMEOUT = 600.0


@dataclass(frozen=True)
class Mesh:
    ports: Ports
    state_dir: Path

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def log(self, name: str) -> str:
        return (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")

    def state(self) -> dict[str, object]:
        data = json.loads((self.state_dir / "state.json").read_text())
        assert isinstance(data, dict)
        return data


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_stack(state_dir: Path, ports: Ports) -> subprocess.Popen[bytes]:
    """`switchboard up` in the background; returns once every process is ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "switchboard.cli", "up", "--no-ui"]
    argv += ["--base-port", str(ports.base), "--state-dir", str(state_dir)]
    with (state_dir / "up.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        state = _state(state_dir)
        if state.get("state") == "ready":
            return proc
        if proc.poll() is not None or state.get("state") in ("stopping", "stopped"):
            break
        time.sleep(0.5)
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


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    state_dir = tmp_path_factory.mktemp("mesh")
    ports = free_block()
    proc = start_stack(state_dir, ports)
    try:
        yield Mesh(ports, state_dir)
    finally:
        stop_stack(proc)
