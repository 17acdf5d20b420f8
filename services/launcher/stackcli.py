"""`switchboard down | restart | status`: what the CLI does to a stack that runs, read from
(and signalled through) its state directory."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from . import control, receiver, stack, ui
from .ports import Ports
from .replicas import Replicas
from .supervisor import alive, kill_group, read_state

# A graceful stop, then Triton's start (the slowest, up to 300 s) with room to spare.
RESTART_TIMEOUT = 360.0


def down(state_dir: Path, timeout: float = 60.0) -> int:
    state = read_state(state_dir)
    if state is None:
        print(f"no stack state in {state_dir}", file=sys.stderr)
        return 1
    pid = state.get("supervisor_pid")
    if alive(pid) and isinstance(pid, int):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    # A supervisor that was killed outright cannot stop its children: do it here.
    procs = state.get("processes")
    for proc in procs.values() if isinstance(procs, dict) else ():
        if isinstance(proc, dict) and alive(proc.get("pid")):
            kill_group(int(proc["pid"]), signal.SIGKILL)
    print("stopped")
    return 0


def restart(state_dir: Path, name: str, timeout_s: float = RESTART_TIMEOUT) -> int:
    """0 once `name` runs again and is ready; 1 if it is not or no stack runs; 2 for a name
    the stack does not have (a usage error)."""
    state = read_state(state_dir) or {}
    pid, procs = state.get("supervisor_pid"), state.get("processes")
    if not isinstance(pid, int) or not alive(pid) or not isinstance(procs, dict):
        print(f"no stack runs from {state_dir}", file=sys.stderr)
        return 1
    before = procs.get(name)
    if not isinstance(before, dict):
        print(f"unknown process {name!r}; known: {sorted(procs)}", file=sys.stderr)
        return 2
    if before.get("state") not in control.RESTARTABLE:
        print(f"{name} is {before.get('state')}; only a started process restarts", file=sys.stderr)
        return 1
    control.send(state_dir, pid, name)
    if failure := _await_restart(state_dir, name, before, timeout_s):
        print(failure, file=sys.stderr)
        return 1
    print(f"{name} restarted and ready")
    return 0


def _await_restart(
    state_dir: Path, name: str, before: Mapping[str, object], timeout_s: float
) -> str | None:
    """None once `name` started again and is ready; else why it is not."""
    seen = before.get("restarts")
    seen = seen if isinstance(seen, int) else 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        state = read_state(state_dir) or {}
        if not alive(state.get("supervisor_pid")) or state.get("state") in ("stopping", "stopped"):
            return "the stack stopped"
        procs = state.get("processes")
        proc = procs.get(name) if isinstance(procs, dict) else None
        restarts = proc.get("restarts") if isinstance(proc, dict) else None
        if not isinstance(proc, dict) or not isinstance(restarts, int) or restarts <= seen:
            continue
        if proc.get("state") == "ready":
            return None
        if proc.get("state") in ("restarting", "crashloop", "failed"):
            return f"{name} is {proc['state']}: {proc.get('detail') or ''}"
    return f"{name} was not ready again within {timeout_s:.0f}s"


async def status(
    ports: Ports, state_dir: Path, environ: Mapping[str, str], *, as_json: bool = False
) -> int:
    state = read_state(state_dir)
    if state is None:
        none = json.dumps({"stack": ports.base, "state": "none"})
        print(none if as_json else f"no stack has run from {state_dir}")
        return 1
    running = alive(state.get("supervisor_pid"))
    procs = state.get("processes")
    # The replicas that ran are the ones state.json names.
    replicas = Replicas.of_names(procs if isinstance(procs, dict) else ())
    specs = stack.build(ports, state_dir, environ, replicas=replicas)
    names = list(procs) if isinstance(procs, dict) else []
    checks = {spec.name: spec.check for spec in specs}
    if receiver.NAME in names:
        checks[receiver.NAME] = receiver.check(ports)
    rows: list[Mapping[str, object]] = []
    healthy = running
    for name, proc in procs.items() if isinstance(procs, dict) else ():
        row: dict[str, object] = dict(proc)
        recorded = str(row.get("state"))
        if not alive(row.get("pid")):
            # Waiting out a backoff or left down is what the supervisor knows; any other
            # state without its process is a death it has not seen yet (or cannot see).
            kept = not running or recorded in ("waiting", "restarting", "crashloop", "failed")
            row["state"] = recorded if kept else "dead"
            healthy = False
        elif recorded != "ready":
            healthy = False  # starting again, or stopping
        elif name in checks:
            ok = await checks[name]()
            row["state"] = "healthy" if ok else "unhealthy"
            healthy = healthy and ok
        rows.append(row)
    stack_state = state.get("state") if running else "not running"
    if as_json:
        public, grpc = f"http://127.0.0.1:{ports.public}", f"127.0.0.1:{ports.grpc}"
        summary = {"stack": ports.base, "state": stack_state, "healthy": healthy}
        uis = dict(receiver.addresses(ports, names))  # the web UIs, by label
        addresses = {"public": public, "grpc": grpc, "uis": uis}
        print(json.dumps({**summary, **addresses, "processes": rows}, default=str))
        return 0 if healthy else 1
    ui.console().print(ui.table(f"switchboard stack {ports.base}: {stack_state}", rows))
    for label, url in receiver.addresses(ports, names):
        print(f"{label}: {url}")
    return 0 if healthy else 1
