"""`switchboard up` as a child process, for tests and benchmarks: the same launcher, on a
block of free ports, returning once every process is ready."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .ports import Ports
from .replicas import Replicas

READY_TIMEOUT = 600.0


class StackFailed(RuntimeError):
    """The stack did not come up; the message carries the tail of every log."""


@dataclass
class Background:
    ports: Ports
    state_dir: Path
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 90.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self, name: str) -> str:
        return (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")


def start(
    state_dir: Path, ports: Ports, only: Sequence[str] = (), replicas: Replicas | None = None
) -> Background:
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "switchboard.cli", "up", "--no-ui"]
    argv += ["--base-port", str(ports.base), "--state-dir", str(state_dir)]
    if only:
        argv += ["--only", ",".join(only)]
    if replicas is not None:
        argv += ["--replicas", replicas.flag()]
    with (state_dir / "up.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    stack = Background(ports, state_dir, proc)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        state = _state(state_dir)
        # The supervisor runs in `proc`; until it writes its first state, the file is an
        # earlier stack's ("stopped", or "ready" from one that was killed) and says nothing.
        ours = state.get("supervisor_pid") == proc.pid
        if ours and state.get("state") == "ready":
            return stack
        if proc.poll() is not None or (ours and state.get("state") in ("stopping", "stopped")):
            break
        time.sleep(0.2)
    stack.stop()
    logs = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in sorted(state_dir.glob("**/*.log")))
    raise StackFailed(f"stack in {state_dir} did not come up:\n{logs}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _state(state_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
