"""Starts a stack in dependency order, keeps it up, and stops it leaving nothing behind.

Each child runs in its own session (process group) so Ctrl-C reaches only the
supervisor, which then stops dependents before what they depend on; the kernel sends
the child SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG), and stopping kills
the whole group so helpers a child spawned (Triton's Python stubs) go too.

A process that dies before its first ready fails the stack's start. One that dies after
it is started again, alone, with the same argv, environment and ports (`restart.py`
says when); what depends on it is not restarted but reconnects by itself, as it would
in Kubernetes. `switchboard restart <name>` asks for a restart by hand (`control.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from . import children, control, leftovers
from .children import kill_group
from .procstate import ProcState, alive, read_state
from .restart import RestartPolicy, Restarts
from .spec import ProcessSpec

# `status`, `down`, the tests and the benchmarks import these from here.
__all__ = ["STOP_GRACE", "ProcState", "Supervisor", "alive", "kill_group", "read_state"]

STOP_GRACE = 10.0


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        state_dir: Path,
        base_port: int,
        on_change: Callable[[Supervisor], None] = lambda _: None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.specs = list(specs)
        self.state_dir = state_dir
        self.base_port = base_port
        self.on_change = on_change
        self.policy = policy or RestartPolicy()
        self.stack_state = "starting"
        self.procs = {s.name: ProcState(s.name, ports=s.ports) for s in specs}
        self._ready = {s.name: asyncio.Event() for s in specs}
        self._requests = {s.name: asyncio.Event() for s in specs}
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._ready_since: dict[str, float] = {}
        self._shared_memory: dict[str, set[Path]] = {}
        self._supervised: set[str] = set()
        self._lives: list[asyncio.Task[None]] = []
        self._failed = asyncio.Event()
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
        control.take(self.state_dir)  # requests left for an earlier stack
        loop = asyncio.get_running_loop()
        # Before state.json names our pid: the signal's default action would end us.
        loop.add_signal_handler(control.SIGNAL, self._take_requests)
        try:
            return await self._run(stop)
        finally:
            loop.remove_signal_handler(control.SIGNAL)

    async def _run(self, stop: asyncio.Event) -> int:
        self._changed()
        self._lives = [asyncio.create_task(self._life(spec)) for spec in self.specs]
        up = asyncio.create_task(self._all_ready())
        failed = asyncio.create_task(self._failed.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({up, failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not self._failed.is_set() and not stop.is_set():
            self.stack_state = "ready"
            self._changed()
            await asyncio.wait({failed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        rc = 1 if self._failed.is_set() and self.stack_state != "ready" else 0
        for task in (up, failed, stopped):
            task.cancel()
        await self.shutdown()
        return rc

    async def _all_ready(self) -> None:
        for ready in self._ready.values():
            await ready.wait()

    def request_restart(self, name: str) -> bool:
        """Restart `name` now (gracefully); False unless it is past its first start."""
        if name not in self._supervised:
            return False
        self._requests[name].set()
        return True

    def _take_requests(self) -> None:
        for name in control.take(self.state_dir):
            self.request_restart(name)

    async def _life(self, spec: ProcessSpec) -> None:
        """One process from its first start until the stack stops."""
        proc = self.procs[spec.name]
        for need in spec.needs:
            await self._ready[need].wait()
        try:
            child = await self._spawn(spec, proc)
        except Exception as exc:  # noqa: BLE001 - any start failure fails the stack, shown
            return self._fail(proc, f"could not start: {exc}")
        if failure := await self._until_ready(spec, proc, child):
            return self._fail(proc, failure)
        self._ready[spec.name].set()
        await self._supervise(spec, proc, child)

    async def _supervise(
        self, spec: ProcessSpec, proc: ProcState, child: asyncio.subprocess.Process
    ) -> None:
        """After the first ready: whatever ends the child, start it again.

        A death waits out its backoff (or stops restarts: crashloop); a restart by hand
        stops the child gracefully and starts it at once, and forgives earlier deaths.
        A restart that dies or times out before ready counts as a death."""
        request, restarts = self._requests[spec.name], Restarts(self.policy)
        self._supervised.add(spec.name)
        current: asyncio.subprocess.Process | None = child
        delay: float | None = 0.0
        while True:
            if current is not None:
                if await children.exit_or_request(current, request):
                    await self._stop(proc, current)
                    self._ready_since.pop(spec.name, None)
                    restarts.forgive()
                    delay = 0.0
                else:
                    delay = self._died(proc, current, restarts)
            if delay is None:
                proc.state = "crashloop"
                proc.detail = (
                    f"more than {self.policy.crashloop_deaths} deaths within "
                    f"{self.policy.crashloop_window_s:.0f}s; last: {proc.detail}"
                )
                self._changed()
                await request.wait()
                restarts.forgive()
            elif delay > 0:
                proc.state = "restarting"
                proc.detail = f"{proc.detail}; restart in {delay:.1f}s"
                self._changed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(request.wait(), delay)
                    restarts.forgive()
            request.clear()
            proc.restarts += 1
            current, delay = await self._restart(spec, proc, restarts)

    async def _restart(
        self, spec: ProcessSpec, proc: ProcState, restarts: Restarts
    ) -> tuple[asyncio.subprocess.Process | None, float | None]:
        """(the child, started again and ready, 0) or (None, the delay after this death)."""
        try:
            child = await self._spawn(spec, proc)
        except Exception as exc:  # noqa: BLE001 - shown, and retried like a death
            return None, self._died(proc, None, restarts, f"could not start: {exc}")
        if failure := await self._until_ready(spec, proc, child):
            if child.returncode is None:
                kill_group(child.pid, signal.SIGKILL)
                await child.wait()
            return None, self._died(proc, child, restarts, failure)
        return child, 0.0

    def _died(
        self,
        proc: ProcState,
        child: asyncio.subprocess.Process | None,
        restarts: Restarts,
        detail: str | None = None,
    ) -> float | None:
        """Records a death (`detail`: why, if not just "exited"); the delay before the next
        start, None for a crash loop."""
        now = time.monotonic()
        ready_for = now - self._ready_since.pop(proc.name, now)
        if child is not None:
            # Whatever the child left in its group (stubs, helpers) goes with it.
            kill_group(child.pid, signal.SIGKILL)
            leftovers.remove(self._shared_memory.pop(proc.name, set()))
            proc.exit_code = proc.last_exit = child.returncode
        proc.detail = detail or f"exited with {proc.last_exit}"
        return restarts.died(now, ready_for)

    async def _spawn(self, spec: ProcessSpec, proc: ProcState) -> asyncio.subprocess.Process:
        log_path = self.logs / f"{spec.name}.log"
        proc.log, proc.state, proc.started_at = str(log_path), "starting", time.time()
        proc.ready_at = None
        self._changed()
        # A restart appends: the log of the death is what the next reader wants.
        with log_path.open("ab" if proc.restarts else "wb") as log:
            if proc.restarts:
                log.write(f"--- switchboard: restart {proc.restarts} ---\n".encode())
                log.flush()
            starting = children.start(spec, log)
            try:
                child = await asyncio.shield(starting)
            except asyncio.CancelledError:
                # Stopped while forking: the child must still be stopped with the rest.
                with contextlib.suppress(Exception):
                    self._children[spec.name] = await starting
                raise
        self._children[spec.name] = child
        proc.pid = child.pid
        self._changed()
        return child

    async def _until_ready(
        self, spec: ProcessSpec, proc: ProcState, child: asyncio.subprocess.Process
    ) -> str | None:
        """None once the child passes its check; else why it did not."""
        deadline = time.monotonic() + spec.ready_timeout
        while time.monotonic() < deadline:
            if child.returncode is not None:
                return f"exited with {child.returncode} before ready"
            if await children.passes(spec) and child.returncode is None:
                proc.state, proc.ready_at, proc.detail = "ready", time.time(), ""
                self._ready_since[spec.name] = time.monotonic()
                self._shared_memory[spec.name] = leftovers.shared_memory(child.pid)
                self._changed()
                return None
            await asyncio.sleep(0.25)
        return f"not ready after {spec.ready_timeout:.0f}s"

    def _fail(self, proc: ProcState, detail: str) -> None:
        proc.state, proc.detail = "failed", detail
        self._failed.set()
        self._changed()

    async def shutdown(self) -> None:
        """No restart may race the stop; then dependents first: Envoy and the edge go
        before what they call."""
        self.stack_state = "stopping"
        self._changed()
        for life in self._lives:
            life.cancel()
        await asyncio.gather(*self._lives, return_exceptions=True)
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
        leftovers.remove(self._shared_memory.pop(proc.name, set()))
        if proc.state not in ("failed", "crashloop"):
            proc.state = "stopped"
        proc.exit_code = child.returncode
        self._changed()
