"""`switchboard restart` and `switchboard status` against a supervisor running in this
process, with small child processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard import cli
from switchboard.launcher.ports import Ports, free_block
from switchboard.launcher.procstate import alive
from switchboard.launcher.replicas import Replicas
from switchboard.launcher.restart import RestartPolicy
from switchboard.launcher.spec import ProcessSpec
from switchboard.launcher.supervisor import Supervisor

from .test_supervisor import _http, _port, _recorded, _until


async def _started(
    tmp_path: Path, specs: list[ProcessSpec]
) -> tuple[asyncio.Event, asyncio.Task[int]]:
    sup = Supervisor(specs, tmp_path, 1234, policy=RestartPolicy(first_backoff_s=30.0))
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await _until(lambda: sup.stack_state == "ready")
    return stop, task


@pytest.mark.asyncio
async def test_restart_stops_the_process_starts_it_again_and_waits_until_ready(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop, task = await _started(tmp_path, [_http("one", _port()), _http("two", _port())])
    before = _recorded(tmp_path, "one")
    rc = await asyncio.to_thread(cli.restart, tmp_path, "one", 30.0)
    assert rc == 0, capsys.readouterr().err
    after = _recorded(tmp_path, "one")
    assert after["state"] == "ready" and after["restarts"] == 1
    assert after["pid"] != before["pid"] and alive(after["pid"])
    assert not alive(before["pid"])
    assert after["last_exit"] is None, "a restart by hand is not a death"
    assert _recorded(tmp_path, "two")["restarts"] == 0, "only the named process restarts"
    assert not list((tmp_path / "requests").iterdir())
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0


@pytest.mark.asyncio
async def test_restart_cuts_a_backoff_short(tmp_path: Path) -> None:
    stop, task = await _started(tmp_path, [_http("one", _port())])
    os.killpg(int(str(_recorded(tmp_path, "one")["pid"])), signal.SIGKILL)
    await _until(lambda: _recorded(tmp_path, "one").get("state") == "restarting")
    # The backoff is 30 s; the test's timeout for the restart is 20.
    assert await asyncio.to_thread(cli.restart, tmp_path, "one", 20.0) == 0
    assert _recorded(tmp_path, "one")["last_exit"] == -signal.SIGKILL
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0


@pytest.mark.asyncio
async def test_restart_refuses_unknown_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop, task = await _started(tmp_path, [_http("one", _port())])
    assert await asyncio.to_thread(cli.restart, tmp_path, "nope", 5.0) == 2
    assert "unknown process 'nope'" in capsys.readouterr().err
    assert _recorded(tmp_path, "one")["restarts"] == 0
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0


def test_restart_without_a_running_stack_is_a_runtime_failure(tmp_path: Path) -> None:
    # 1, not 2: the command line is right, the stack is not there (issue 13).
    assert cli.restart(tmp_path, "worker", 5.0) == 1
    (tmp_path / "state.json").write_text(json.dumps({"supervisor_pid": _dead_pid()}))
    assert cli.restart(tmp_path, "worker", 5.0) == 1
    assert cli.main(["restart", "--state-dir", str(tmp_path), "worker"]) == 1


def test_restart_needs_a_process_name() -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["restart"])
    assert exit_.value.code == 2


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_status_shows_restarts_last_exit_and_the_dead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    me, gone = os.getpid(), _dead_pid()
    procs = {
        "steady": {"name": "steady", "state": "ready", "pid": me, "restarts": 0},
        "killed": {"name": "killed", "state": "ready", "pid": gone, "restarts": 2},
        "waiting": {"name": "waiting", "state": "restarting", "pid": gone, "restarts": 1,
                    "last_exit": -9, "detail": "exited with -9; restart in 0.5s"},
        "looping": {"name": "looping", "state": "crashloop", "pid": gone, "restarts": 5,
                    "last_exit": 3},
    }  # fmt: skip
    state = {"supervisor_pid": me, "base_port": 30000, "state": "ready", "processes": procs}
    (tmp_path / "state.json").write_text(json.dumps(state))
    rc = asyncio.run(cli.status(Ports.at(30000), tmp_path, {}))
    assert rc == 1
    cells = {
        row[0]: row
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("│") and (row := [c.strip() for c in line.split("│")[1:-1]])
    }
    # process, state, pid, ports, up, restarts, last exit, log / detail
    assert cells["steady"][1] == "ready"  # no check for it: not a process of a stack
    assert cells["killed"][1] == "dead" and cells["killed"][5] == "2"
    assert cells["waiting"][1:2] + cells["waiting"][5:7] == ["restarting", "1", "SIGKILL"]
    assert cells["looping"][1:2] + cells["looping"][5:7] == ["crashloop", "5", "3"]


def test_replicas_that_do_not_fit_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["up", "--state-dir", str(tmp_path), "--replicas", "planner=5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--replicas" in err and "planner replicas must be within 1..4" in err
    assert not (tmp_path / "state.json").exists(), "nothing started"


def test_up_refuses_when_a_replica_port_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = free_block()
    taken = ports.replica("inference", 2)[1]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        rc = cli.up(ports, tmp_path, {}, live=False, replicas=Replicas(inference=2))
    assert rc == 1  # a runtime failure (a busy port), not a usage error
    assert f"ports in use: [{taken}]" in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists()


def test_status_checks_every_replica_a_stack_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    me = os.getpid()
    ports = free_block()
    procs = {
        name: {"name": name, "state": "ready", "pid": me, "restarts": 0}
        for name in ("planner", "planner-2", "edge-3")
    }
    state = {"supervisor_pid": me, "base_port": ports.base, "state": "ready", "processes": procs}
    (tmp_path / "state.json").write_text(json.dumps(state))
    # Nothing listens on the block, so every check of a process of the stack fails.
    assert asyncio.run(cli.status(ports, tmp_path, {})) == 1
    states = {
        row[0]: row[1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("│") and (row := [c.strip() for c in line.split("│")[1:-1]])
    }
    assert states == {"planner": "unhealthy", "planner-2": "unhealthy", "edge-3": "unhealthy"}
