"""The CLI's contract without a mesh: --version, exit codes (0 ok, 1 runtime failure, 2 usage)
and `status --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from switchboard import cli
from switchboard.launcher.ports import free_block

# Nothing listens here: every call to it is refused.
NOWHERE = "http://127.0.0.1:9"


def switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "switchboard.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_version_prints_the_installed_version() -> None:
    done = switchboard("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"switchboard {version('switchboard')}"


def test_usage_errors_exit_2() -> None:
    assert switchboard("jobs", "frobnicate").returncode == 2
    assert switchboard("jobs", "get").returncode == 2  # the job is missing
    bad = switchboard("jobs", "create", "generate", "{not json", "--url", NOWHERE)
    assert bad.returncode == 2
    assert "not JSON" in bad.stderr
    label = switchboard("jobs", "create", "generate", "{}", "--label", "novalue", "--url", NOWHERE)
    assert label.returncode == 2


def test_an_unreachable_api_is_a_runtime_failure() -> None:
    for args in (("jobs", "get", "abc"), ("jobs", "list", "--json"), ("jobs", "watch", "abc")):
        done = switchboard(*args, "--url", NOWHERE)
        assert done.returncode == 1, args
        assert f"cannot reach {NOWHERE}" in done.stderr


def test_no_stack_to_restart_is_a_runtime_failure(tmp_path: Path) -> None:
    done = switchboard("restart", "--state-dir", str(tmp_path), "worker")
    assert done.returncode == 1
    assert "no stack runs" in done.stderr


def test_status_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ports = free_block()
    assert (
        cli.main(["status", "--json", "--base-port", str(ports.base), "--state-dir", str(tmp_path)])
        == 1
    )
    assert json.loads(capsys.readouterr().out) == {"stack": ports.base, "state": "none"}
    procs = {
        "mine": {"name": "mine", "state": "ready", "pid": os.getpid(), "restarts": 0},
        "gone": {"name": "gone", "state": "ready", "pid": 2**22 + 1, "restarts": 3},
    }
    state = {"supervisor_pid": os.getpid(), "state": "ready", "processes": procs}
    (tmp_path / "state.json").write_text(json.dumps(state))
    rc = cli.main(
        ["status", "--json", "--base-port", str(ports.base), "--state-dir", str(tmp_path)]
    )
    shown = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert shown["healthy"] is False and shown["state"] == "ready"
    assert shown["public"] == f"http://127.0.0.1:{ports.public}"
    assert shown["uis"]["Temporal UI"] == f"http://127.0.0.1:{ports.temporal_ui}"
    states = {p["name"]: (p["state"], p["restarts"]) for p in shown["processes"]}
    assert states == {"mine": ("ready", 0), "gone": ("dead", 3)}
