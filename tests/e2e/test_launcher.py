"""The launcher's promises on a second, separate stack: no collision with the first,
a killed process comes back (and `status` says so), `restart` restarts one by hand, and
`down` leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from switchboard.launcher.ports import free_block

from ..stack import start_stack
from .conftest import Mesh

pytestmark = pytest.mark.e2e


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "switchboard.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _pids_mentioning(text: str) -> list[int]:
    """Every live process whose environment names the stack (the launcher marks them)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().split()
        except OSError:
            continue
        if f"SWITCHBOARD_STACK={text}".encode() in environ and stat[2] != "Z":
            found.append(int(proc.name))
    return found


def _worker(state_dir: Path) -> dict[str, Any]:
    worker = json.loads((state_dir / "state.json").read_text())["processes"]["worker"]
    assert isinstance(worker, dict)
    return worker


def test_second_stack_status_kill_restart_and_down(mesh: Mesh, tmp_path: Path) -> None:
    ports = free_block(start=mesh.ports.base + 64)
    state_dir = tmp_path / "second"
    up = start_stack(state_dir, ports)
    try:
        where = ("--base-port", str(ports.base), "--state-dir", str(state_dir))
        healthy = _cli("status", *where)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert mesh.state()["state"] == "ready", "the first stack is untouched"

        victim = _worker(state_dir)["pid"]
        os.killpg(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            worker = _worker(state_dir)
            if worker["pid"] != victim and worker["state"] == "ready":
                break
            time.sleep(0.5)
        assert worker["restarts"] == 1 and worker["last_exit"] == -signal.SIGKILL, worker
        status = _cli("status", *where)
        assert status.returncode == 0, status.stdout + status.stderr
        worker_line = next(x for x in status.stdout.splitlines() if "worker" in x)
        assert "healthy" in worker_line and "SIGKILL" in worker_line

        restart = _cli("restart", "worker", *where)
        assert restart.returncode == 0, restart.stderr
        worker = _worker(state_dir)
        assert worker["restarts"] == 2 and worker["state"] == "ready"
        assert _cli("restart", "no-such-process", *where).returncode == 2

        down = _cli("down", *where)
        assert down.returncode == 0, down.stderr
        up.process.wait(timeout=60)
        assert _pids_mentioning(str(state_dir)) == []
    finally:
        up.stop()
