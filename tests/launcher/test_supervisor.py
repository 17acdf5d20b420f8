"""The supervisor with real child processes (small Python HTTP servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from switchboard.launcher import checks
from switchboard.launcher.procstate import ProcState, alive, read_state
from switchboard.launcher.restart import RestartPolicy
from switchboard.launcher.spec import ProcessSpec
from switchboard.launcher.supervisor import Supervisor

# Quick enough for tests; the rules themselves are tested in test_restart.py.
FAST = RestartPolicy(first_backoff_s=0.1, max_backoff_s=0.4, crashloop_deaths=3)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(name: str, port: int, *, needs: tuple[str, ...] = (), shell: str = "") -> ProcessSpec:
    server = f"{sys.executable} -m http.server {port} --bind 127.0.0.1"
    argv = ["sh", "-c", f"{shell}exec {server}"]
    return ProcessSpec(
        name,
        lambda: argv,
        checks.http_ok(f"http://127.0.0.1:{port}/"),
        needs=needs,
        env=dict(os.environ),
        ports=(port,),
        ready_timeout=20,
    )


async def _run_until(sup: Supervisor, predicate: str, then_stop: bool = True) -> int:
    stop = asyncio.Event()

    def changed(s: Supervisor) -> None:
        if s.stack_state == predicate and then_stop:
            stop.set()

    sup.on_change = changed
    return await asyncio.wait_for(sup.run(stop), timeout=60)


@pytest.mark.asyncio
async def test_starts_in_dependency_order_and_stops_everything(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    specs = [
        _http("front", _port(), needs=("back",)),
        # The back process leaves a grandchild in its group; stopping must take it too.
        _http("back", _port(), shell=f"sleep 300 & echo $! > {pid_file}; "),
    ]
    sup = Supervisor(specs, tmp_path, 1234)
    assert await _run_until(sup, "ready") == 0
    front, back = sup.procs["front"], sup.procs["back"]
    assert back.ready_at is not None and front.started_at is not None
    assert front.started_at >= back.ready_at
    assert {front.state, back.state} == {"stopped"}
    assert not alive(front.pid) and not alive(back.pid)
    assert not alive(int(pid_file.read_text()))
    state = read_state(tmp_path)
    assert state is not None and state["state"] == "stopped"


@pytest.mark.asyncio
async def test_a_process_dying_before_ready_fails_the_stack(tmp_path: Path) -> None:
    crash = ProcessSpec(
        "crash",
        lambda: [sys.executable, "-c", "raise SystemExit(3)"],
        checks.http_ok(f"http://127.0.0.1:{_port()}/"),
        env=dict(os.environ),
    )
    fine = _http("fine", _port())
    sup = Supervisor([fine, crash], tmp_path, 1234)
    assert await _run_until(sup, "never", then_stop=False) == 1
    assert sup.procs["crash"].state == "failed"
    assert "exited with 3" in sup.procs["crash"].detail
    assert not alive(sup.procs["fine"].pid)
    assert (tmp_path / "logs" / "crash.log").exists()


async def _always() -> bool:
    return True


def _script(name: str, shell: str) -> ProcessSpec:
    """A shell script that counts as ready while it runs."""
    return ProcessSpec(name, lambda: ["sh", "-c", shell], _always, env=dict(os.environ))


async def _until(what: Callable[[], bool], within_s: float = 30.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if what():
            return
        await asyncio.sleep(0.05)
    pytest.fail("timed out waiting")


def _recorded(tmp_path: Path, name: str) -> dict[str, object]:
    state = read_state(tmp_path) or {}
    procs = state.get("processes")
    proc = procs.get(name) if isinstance(procs, dict) else None
    return proc if isinstance(proc, dict) else {}


@pytest.mark.asyncio
async def test_a_process_killed_after_ready_is_started_again(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    spec = _http("solo", _port(), shell=f"sleep 300 & echo $! > {pid_file}; ")
    sup = Supervisor([spec], tmp_path, 1234, policy=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.stack_state == "ready")
    first, grandchild = sup.procs["solo"].pid, int(pid_file.read_text())
    assert first is not None and _recorded(tmp_path, "solo")["restarts"] == 0
    # Only the leader dies: what it left in its group must go before the new start.
    os.kill(first, signal.SIGKILL)
    await _until(lambda: _recorded(tmp_path, "solo").get("restarts") == 1)
    await _until(lambda: _recorded(tmp_path, "solo").get("state") == "ready")
    proc = _recorded(tmp_path, "solo")
    assert proc["pid"] != first and alive(proc["pid"])
    assert proc["last_exit"] == -signal.SIGKILL
    assert not alive(grandchild)
    assert sup.stack_state == "ready"
    assert "restart 1" in (tmp_path / "logs" / "solo.log").read_text()
    # And the way the chaos suite kills: the whole group.
    os.killpg(int(str(proc["pid"])), signal.SIGKILL)
    await _until(
        lambda: (
            _recorded(tmp_path, "solo").get("restarts") == 2
            and _recorded(tmp_path, "solo").get("state") == "ready"
        )
    )
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert not alive(sup.procs["solo"].pid)


@pytest.mark.asyncio
async def test_backoff_grows_until_the_crash_loop_limit_stops_restarts(tmp_path: Path) -> None:
    healed = tmp_path / "healed"
    # Ready, then dead a moment later, until the flag file says otherwise.
    flaky = _script("flaky", f"[ -e {healed} ] && exec sleep 300; sleep 0.2; exit 7")
    seen: list[tuple[str, str]] = []
    sup = Supervisor([flaky], tmp_path, 1234, policy=FAST)
    sup.on_change = lambda s: seen.append((s.procs["flaky"].state, s.procs["flaky"].detail))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.procs["flaky"].state == "crashloop")
    proc: ProcState = sup.procs["flaky"]
    # Deaths 1..3 wait 0.1, 0.2, 0.4 s; the 4th is more than 3 and ends the restarts.
    waits = [d.split("restart in ")[1] for s, d in seen if s == "restarting"]
    assert list(dict.fromkeys(waits)) == ["0.1s", "0.2s", "0.4s"]
    assert proc.restarts == 3 and proc.last_exit == 7
    assert "more than 3 deaths" in proc.detail
    assert _recorded(tmp_path, "flaky")["state"] == "crashloop"
    await asyncio.sleep(1.0)
    assert proc.restarts == 3 and proc.state == "crashloop", "no restart after a crash loop"
    # A restart by hand tries again (and does not count toward the limit).
    healed.touch()
    assert sup.request_restart("flaky")
    await _until(lambda: proc.state == "ready")
    assert proc.restarts == 4 and alive(proc.pid)
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0


@pytest.mark.asyncio
async def test_stopping_during_a_backoff_starts_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    spec = _script("slow", f"sleep 300 & echo $! > {pid_file}; exec sleep 300")
    sup = Supervisor([spec], tmp_path, 1234, policy=RestartPolicy(first_backoff_s=30.0))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.stack_state == "ready" and pid_file.exists())
    pid = sup.procs["slow"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: sup.procs["slow"].state == "restarting")
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0, "the stop did not wait out the backoff"
    proc = sup.procs["slow"]
    assert proc.state == "stopped" and proc.restarts == 0 and proc.pid == pid
    assert not alive(int(pid_file.read_text()))
    assert _recorded(tmp_path, "slow")["state"] == "stopped"


@pytest.mark.asyncio
async def test_a_restart_that_dies_before_ready_counts_as_a_death(tmp_path: Path) -> None:
    second, ready = tmp_path / "second", tmp_path / "ready"
    # Ready means "my pid is in the file"; the second start exits without writing it.
    shell = (
        f"if [ -e {second} ]; then rm {second}; sleep 0.5; exit 5; fi; "
        f"touch {second}; echo $$ > {ready}; exec sleep 300"
    )
    procs: dict[str, ProcState] = {}

    async def check() -> bool:
        return ready.exists() and ready.read_text().strip() == str(procs["once"].pid)

    spec = ProcessSpec("once", lambda: ["sh", "-c", shell], check, env=dict(os.environ))
    sup = Supervisor([spec], tmp_path, 1234, policy=FAST)
    procs.update(sup.procs)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.stack_state == "ready")
    proc = sup.procs["once"]
    assert proc.pid is not None
    os.killpg(proc.pid, signal.SIGKILL)
    await _until(lambda: proc.restarts == 2 and proc.state == "ready")
    assert proc.last_exit == 5
    assert sup.stack_state == "ready", "a failed restart does not fail a running stack"
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0


@pytest.mark.asyncio
async def test_shared_memory_of_a_killed_group_is_removed(tmp_path: Path) -> None:
    names = tmp_path / "names"
    # Like a Triton stub: a region in /dev/shm that only a graceful exit would remove.
    code = (
        "import time; from multiprocessing import shared_memory as s; "
        "m = s.SharedMemory(create=True, size=4096); "
        f"open({str(names)!r}, 'a').write(m.name + '\\n'); time.sleep(300)"
    )

    def lines() -> list[str]:
        return names.read_text().split() if names.exists() else []

    async def check() -> bool:
        return len(lines()) > sup.procs["shm"].restarts

    spec = ProcessSpec("shm", lambda: [sys.executable, "-c", code], check, env=dict(os.environ))
    sup = Supervisor([spec], tmp_path, 1234, policy=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.stack_state == "ready")
    first = Path("/dev/shm") / lines()[0].lstrip("/")
    assert first.exists()
    pid = sup.procs["shm"].pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    await _until(lambda: sup.procs["shm"].restarts == 1 and sup.procs["shm"].state == "ready")
    assert not first.exists()
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert not (Path("/dev/shm") / lines()[1].lstrip("/")).exists()
