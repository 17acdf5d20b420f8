"""Faults: SIGKILL one process of a stack (its whole process group, as the OOM killer or a
node loss would) and wait for the supervisor to bring it back.

The supervisor's contract (`<state_dir>/state.json`): `processes[name]` has `pid`, `state`
(`ready` once its check passes again), `restarts` and `last_exit`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Fault:
    process: str
    old_pid: int
    new_pid: int | None = None
    killed_at: float = field(default_factory=time.monotonic)
    # Accepted jobs of every wave so far that had not ended when the kill came.
    in_flight: int = 0
    # From the kill until the process (and then every other one) was ready again.
    seconds: float = 0.0
    # How many restarts each process gained over this fault's wave.
    restarts: dict[str, int] = field(default_factory=dict)
    # Processes not `ready` when the wait ended, with their state.
    not_ready: dict[str, str] = field(default_factory=dict)

    @property
    def recovered(self) -> bool:
        return self.new_pid is not None and not self.not_ready

    def restarts_seen(self) -> str:
        return ", ".join(f"{name}+{n}" for name, n in sorted(self.restarts.items())) or "none"


def processes(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}  # being replaced this instant; the next read sees it
    procs = data.get("processes", {}) if isinstance(data, dict) else {}
    return procs if isinstance(procs, dict) else {}


def restart_counts(state_dir: Path) -> dict[str, int]:
    counts = {}
    for name, proc in processes(state_dir).items():
        value = proc.get("restarts", 0)
        counts[name] = value if isinstance(value, int) else 0
    return counts


def kill(state_dir: Path, name: str) -> Fault:
    pid = processes(state_dir)[name]["pid"]
    assert isinstance(pid, int), f"{name} has no pid in state.json"
    os.killpg(pid, signal.SIGKILL)
    return Fault(name, pid)


async def await_recovery(
    state_dir: Path, fault: Fault, before: dict[str, int], within: float
) -> Fault:
    """Waits until the killed process runs again under a new pid and every process of the
    stack is ready; records how long that took and who restarted."""
    started = time.monotonic()
    deadline = started + within
    while time.monotonic() < deadline:
        procs = processes(state_dir)
        mine = procs.get(fault.process, {})
        if mine.get("pid") not in (None, fault.old_pid) and mine.get("state") == "ready":
            fault.new_pid = mine["pid"]
            if all(p.get("state") == "ready" for p in procs.values()):
                break
        await asyncio.sleep(0.2)
    fault.seconds = time.monotonic() - started
    procs = processes(state_dir)
    fault.not_ready = {
        name: f"{p.get('state')} (pid {p.get('pid')})"
        for name, p in procs.items()
        if p.get("state") != "ready" or (name == fault.process and p.get("pid") == fault.old_pid)
    }
    after = restart_counts(state_dir)
    fault.restarts = {n: after[n] - before.get(n, 0) for n in after if after[n] > before.get(n, 0)}
    return fault
