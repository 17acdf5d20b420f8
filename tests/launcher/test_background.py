"""`background.start` in a state directory where a stack ran before: it waits for the new
supervisor's state instead of reading the old `state.json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.launcher import background
from switchboard.launcher.ports import free_block


def _state(state_dir: Path) -> dict[str, object]:
    data = json.loads((state_dir / "state.json").read_text())
    assert isinstance(data, dict)
    return data


def _dead_pid() -> int:
    """The pid of a process that has ended (so `switchboard up` takes its stack as gone)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    return gone.pid


@pytest.mark.timeout(120)
def test_a_second_start_in_the_same_state_dir_waits_for_its_own_stack(tmp_path: Path) -> None:
    ports = free_block()
    first = background.start(tmp_path, ports, only=("valkey",))
    first.stop()
    assert _state(tmp_path)["state"] == "stopped"

    second = background.start(tmp_path, ports, only=("valkey",))
    try:
        state = _state(tmp_path)
        assert state["supervisor_pid"] == second.process.pid
        assert state["state"] == "ready"
    finally:
        second.stop()


@pytest.mark.timeout(120)
def test_a_ready_state_left_by_a_killed_stack_is_not_taken_for_the_new_one(
    tmp_path: Path,
) -> None:
    killed = {"supervisor_pid": _dead_pid(), "base_port": 0, "state": "ready", "processes": {}}
    (tmp_path / "state.json").write_text(json.dumps(killed))

    stack = background.start(tmp_path, free_block(), only=("valkey",))
    try:
        state = _state(tmp_path)
        assert state["supervisor_pid"] == stack.process.pid
        assert state["state"] == "ready"
        processes = state["processes"]
        assert isinstance(processes, dict) and set(processes) == {"valkey"}
    finally:
        stack.stop()
