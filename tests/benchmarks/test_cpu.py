"""The benchmarks' CPU meter: /proc stat lines, each process with its descendants, and the
CPU per call between two snapshots, against real processes of this machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import cpu
from benchmarks.cpu import (
    LOAD_GENERATOR,
    SUPERVISOR,
    Meter,
    Stat,
    ceiling_per_s,
    cpu_row,
    parse_stat,
    per_call,
    read_stats,
    trees,
)

# A process that, once told to, burns this much CPU, says so, then waits to be ended.
BURN_S = 0.3
BURNER = (
    "import sys, time\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    f"until = time.process_time() + {BURN_S}\n"
    "while time.process_time() < until: pass\n"
    "print('burnt', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A shell that waits on a `sleep` of its own: a child and a grandchild of this process."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60; exit 0"], start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGKILL)  # its own group: the shell and its sleep
    proc.wait()


def test_a_stat_line_is_read_past_a_command_name_with_spaces_and_parens() -> None:
    fields = ["S", "4321"] + ["0"] * 9 + ["150", "25", "7", "3"] + ["20", "0", "1"]
    stat = parse_stat("1234 (a (b) c) ) " + " ".join(fields) + "\n")
    assert (stat.pid, stat.ppid, stat.ticks) == (1234, 4321, 150 + 25 + 7 + 3)


def test_this_process_own_stat_is_read() -> None:
    stats = read_stats()
    me = stats[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.ticks >= 0


def test_cpu_per_call_between_two_snapshots_by_name_biggest_first() -> None:
    before = {"temporal": 1000.0, "edge": 200.0, "valkey": 50.0, "gone": 400.0}
    after = {"temporal": 3000.0, "edge": 700.0, "valkey": 51.0, "gone": 0.0, "new": 30.0}

    cost = per_call(before, after, 100)

    assert cost == {"temporal": 20.0, "edge": 5.0, "new": 0.3}
    assert list(cost) == ["temporal", "edge", "new"]  # valkey: 0.01 ms; gone: gave CPU back


def test_a_cpu_row_leaves_the_load_generator_out_of_the_mesh_total() -> None:
    row = cpu_row("/v1/embeddings", {"temporal": 3.0, "edge": 2.5, LOAD_GENERATOR: 4.0})
    cores = os.cpu_count() or 1
    assert row["total_ms"] == 5.5
    assert row["ceiling_per_s"] == round(cores * 1000 / 5.5, 1)
    assert row["by_process"][LOAD_GENERATOR] == 4.0
    assert ceiling_per_s(50.0, 2) == 40.0


def test_a_process_tree_holds_the_children_and_their_children(
    sleeper: subprocess.Popen[bytes],
) -> None:
    stats = _until_child_of(sleeper.pid)
    sleep = next(s.pid for s in stats.values() if s.ppid == sleeper.pid)

    mine = trees({"me": os.getpid()}, stats)["me"]
    assert {os.getpid(), sleeper.pid, sleep} <= mine

    # another named process is counted under its own name, with its descendants
    split = trees({"me": os.getpid(), "shell": sleeper.pid}, stats)
    assert sleeper.pid not in split["me"] and sleep not in split["me"]
    assert split["shell"] == {sleeper.pid, sleep}


def test_a_meter_counts_a_stack_process_cpu_and_nothing_once_it_is_gone(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as burner:
        assert burner.stdin is not None and burner.stdout is not None
        try:
            assert burner.stdout.readline() == b"ready\n"
            state = {"supervisor_pid": os.getpid(), "processes": {"burner": {"pid": burner.pid}}}
            (tmp_path / "state.json").write_text(json.dumps(state))
            meter = Meter(tmp_path)
            before = meter.snapshot()
            burner.stdin.write(b"go\n")
            burner.stdin.flush()
            assert burner.stdout.readline() == b"burnt\n"
            after = meter.snapshot()
        finally:
            burner.kill()  # leaving `with` closes its pipes and waits for it
    gone = meter.snapshot()

    # whole clock ticks (10 ms): a tick short at most, and a little more for reading
    assert BURN_S * 1000 - 20 <= after["burner"] - before["burner"] <= BURN_S * 1000 + 100
    assert gone["burner"] == 0
    assert after[LOAD_GENERATOR] >= before[LOAD_GENERATOR] > 0
    assert SUPERVISOR in after  # this process, as the stack's supervisor here


def test_a_meter_without_a_stack_has_only_the_load_generator(tmp_path: Path) -> None:
    assert list(Meter(tmp_path).snapshot()) == [LOAD_GENERATOR]


def _until_child_of(pid: int) -> dict[int, Stat]:
    """/proc once the shell has started its `sleep`."""
    for _ in range(200):
        stats = read_stats()
        if any(s.ppid == pid for s in stats.values()):
            return stats
        time.sleep(0.01)
    raise AssertionError(f"no child of {pid} appeared")


def test_the_hosts_stolen_share_comes_from_the_cpu_line(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n")
    before = cpu.host_ticks(stat)
    stat.write_text("cpu  200 0 100 1495 10 0 10 185 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    after = cpu.host_ticks(stat)
    assert before == (35, 1000)
    # 150 of the 1000 ticks between the readings were stolen.
    assert cpu.stolen_share(before, after) == 15.0
    assert cpu.stolen_share(after, after) == 0.0
