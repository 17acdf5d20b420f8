"""Starts a stack in dependency order, watches it, and stops it leaving nothing behind.

Each child runs in its own session (process group) so Ctrl-C reaches only the
supervisor, which then stops dependents before what they depend on; the kernel sends
the child SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG), and stopping kills
the whole group so helpers a child spawned (Triton's Python stubs) go too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .stack import ProcessSpec

STOP_GRACE = 10.0
_PR_SET_PDEATHSIG = 1


@dataclass
class ProcState:
    name: str
    state: str = "waiting"  # waiting, starting, ready, failed, exited, stopping, stopped
    pid: int | None = None
    ports: tuple[int, ...] = ()
    log: str = ""
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    detail: str = ""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        state_dir: Path,
        base_port: int,
        on_change: Callable[[Supervisor], None] = lambda _: None,
    ) -> None:
        self.specs = list(specs)
        self.state_dir = state_dir
        self.base_port = base_port
        self.on_change = on_change
        self.stack_state = "starting"
        self.procs = {s.name: ProcState(s.name, ports=s.ports) for s in specs}
        self._ready = {s.name: asyncio.Event() for s in specs}
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._failed = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self.logs = state_dir / "logs"

    def _changed(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "base_port": self.base_port,
            "state": self.stack_state,
            "processes": {name: asdict(p) for name, p in self.procs.items()},
        }
        tmp = self.state_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_dir / "state.json")
        self.on_change(self)

    async def run(self, stop: asyncio.Event) -> int:
        """Brings the stack up and keeps it until `stop`; 1 if it never became ready."""
        self.logs.mkdir(parents=True, exist_ok=True)
        self._changed()
        starters = [asyncio.create_task(self._start(spec)) for spec in self.specs]
        up = asyncio.create_task(asyncio.wait(starters))
        failed = asyncio.create_task(self._failed.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({up, failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not self._failed.is_set() and not stop.is_set():
            self.stack_state = "ready"
            self._changed()
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        rc = 1 if self._failed.is_set() and self.stack_state != "ready" else 0
        for task in (*starters, up, failed, stopped):
            task.cancel()
        await self.shutdown()
        return rc

    async def _start(self, spec: ProcessSpec) -> None:
        proc = self.procs[spec.name]
        for need in spec.needs:
            await self._ready[need].wait()
        log_path = self.logs / f"{spec.name}.log"
        proc.log, proc.state, proc.started_at = str(log_path), "starting", time.time()
        try:
            with log_path.open("wb") as log:
                child = await asyncio.create_subprocess_exec(
                    *spec.argv(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=dict(spec.env),
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
        except Exception as exc:  # noqa: BLE001 - any start failure fails the stack, shown
            return self._fail(proc, f"could not start: {exc}")
        self._children[spec.name] = child
        proc.pid = child.pid
        self._changed()
        self._watchers.add(asyncio.create_task(self._watch_exit(spec.name, child)))
        await self._await_ready(spec, proc, child)

    async def _await_ready(
        self, spec: ProcessSpec, proc: ProcState, child: asyncio.subprocess.Process
    ) -> None:
        deadline = time.monotonic() + spec.ready_timeout
        while time.monotonic() < deadline:
            if child.returncode is not None:
                return self._fail(proc, f"exited with {child.returncode} before ready")
            if await spec.check():
                proc.state, proc.ready_at = "ready", time.time()
                self._ready[spec.name].set()
                self._changed()
                return None
            await asyncio.sleep(0.25)
        return self._fail(proc, f"not ready after {spec.ready_timeout:.0f}s")

    def _fail(self, proc: ProcState, detail: str) -> None:
        proc.state, proc.detail = "failed", detail
        self._failed.set()
        self._changed()

    async def _watch_exit(self, name: str, child: asyncio.subprocess.Process) -> None:
        code = await child.wait()
        proc = self.procs[name]
        proc.exit_code = code
        if proc.state not in ("stopping", "stopped", "failed"):
            proc.state, proc.detail = "exited", f"exited unexpectedly with {code}"
            self._changed()

    async def shutdown(self) -> None:
        """Dependents first: Envoy and the edge go before what they call."""
        self.stack_state = "stopping"
        self._changed()
        for spec in reversed(self.specs):
            child = self._children.get(spec.name)
            if child is not None:
                await self._stop(self.procs[spec.name], child)
        self.stack_state = "stopped"
        self._changed()

    async def _stop(self, proc: ProcState, child: asyncio.subprocess.Process) -> None:
        if child.returncode is None:
            proc.state = "stopping"
            self._changed()
            kill_group(child.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), STOP_GRACE)
            except TimeoutError:
                kill_group(child.pid, signal.SIGKILL)
                await child.wait()
        # Whatever the child left in its group (stubs, helpers) must not outlive it.
        kill_group(child.pid, signal.SIGKILL)
        if proc.state not in ("exited", "failed"):
            proc.state = "stopped"
        proc.exit_code = child.returncode
        self._changed()


def read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); /proc tells the truth.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
