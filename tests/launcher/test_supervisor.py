"""The supervisor with real child processes (small Python HTTP servers)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from switchboard.launcher import checks
from switchboard.launcher.stack import ProcessSpec
from switchboard.launcher.supervisor import Supervisor, alive, read_state


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


@pytest.mark.asyncio
async def test_a_process_dying_after_ready_is_recorded(tmp_path: Path) -> None:
    sup = Supervisor([_http("solo", _port())], tmp_path, 1234)
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    for _ in range(200):
        if sup.stack_state == "ready":
            break
        await asyncio.sleep(0.05)
    pid = sup.procs["solo"].pid
    assert pid is not None
    os.kill(pid, 9)
    for _ in range(200):
        state = read_state(tmp_path)
        if state and state["processes"]["solo"]["state"] == "exited":  # type: ignore[index]
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the death was not recorded")
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
