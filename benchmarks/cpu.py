"""CPU time the mesh spends per call or job, by process, read from /proc around a loop.

On a machine with few cores the CPU one job costs caps the jobs per second, whatever the
latency: `cores x 1000 / CPU ms per job`. The benchmarks print that cost next to their
throughput figures, taken in the same loops, so a reader sees where it goes.

    meter = Meter(state_dir)
    before = meter.snapshot()
    ...  # the loop: `calls` calls
    cost = per_call(before, meter.snapshot(), calls)  # {"temporal": 31.2, ...} ms per call
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchboard.launcher.procstate import read_state

LOAD_GENERATOR = "load generator"  # this process: it drives the loop, it is not the mesh
SUPERVISOR = "supervisor"  # the launcher's own process, and children not named in state.json
SMALLEST_MS = 0.05  # per call; a process under it is noise, left out


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def parse_stat(text: str) -> Stat:
    """One `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and `)`, so
    the fields after it are found from its LAST `)`. The children's times (cutime, cstime)
    count too: a helper that ended and was waited for keeps its CPU in its parent's."""
    pid = text[: text.index(" ")]
    after = text[text.rindex(")") + 2 :].split()  # field 3 (state) onwards
    ppid = int(after[1])  # field 4
    utime, stime, cutime, cstime = (int(v) for v in after[11:15])  # fields 14 to 17
    return Stat(int(pid), ppid, utime + stime + cutime + cstime)


def read_stats(proc: Path = Path("/proc")) -> dict[int, Stat]:
    """Every process's stat now; one that ends while being read is left out."""
    stats: dict[int, Stat] = {}
    for path in proc.glob("[0-9]*/stat"):
        try:
            stat = parse_stat(path.read_text())
        except (OSError, ValueError, IndexError):
            continue
        stats[stat.pid] = stat
    return stats


def trees(roots: Mapping[str, int], stats: Mapping[int, Stat]) -> dict[str, set[int]]:
    """Each root with its descendants; a walk stops at another root, which is counted under
    its own name (the supervisor's descendants are all the others)."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    named = set(roots.values())
    found: dict[str, set[int]] = {}
    for name, root in roots.items():
        pids, todo = {root}, [root]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in named and child not in pids:
                    pids.add(child)
                    todo.append(child)
        found[name] = pids
    return found


def ms_of(pids: Iterable[int], stats: Mapping[int, Stat], tick_hz: int) -> float:
    """CPU ms of these processes; one that is gone counts 0."""
    return sum(stats[p].ticks for p in pids if p in stats) * 1000 / tick_hz


def host_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int]:
    """(stolen, all) CPU ticks of the machine so far, from /proc/stat's `cpu` line: time a
    virtual machine's CPUs waited for the host is another tenant's load, not the mesh's."""
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    stolen = fields[7] if len(fields) > 7 else 0
    return stolen, sum(fields[:8])


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time stolen by the host between two `host_ticks` readings, in %."""
    ticks = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / ticks, 1) if ticks > 0 else 0.0


def self_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def per_call(
    before: Mapping[str, float], after: Mapping[str, float], calls: int
) -> dict[str, float]:
    """CPU ms per call by name between two snapshots, the biggest first; names under
    SMALLEST_MS per call (or that gave CPU back: a restarted process) are left out."""
    cost = {
        name: round((after.get(name, 0.0) - before.get(name, 0.0)) / calls, 2)
        for name in {*before, *after}
    }
    kept = {name: ms for name, ms in cost.items() if ms >= SMALLEST_MS}
    return dict(sorted(kept.items(), key=lambda item: -item[1]))


def mesh_ms(cost: Mapping[str, float]) -> float:
    """The mesh's share: every process but the load generator."""
    return round(sum(ms for name, ms in cost.items() if name != LOAD_GENERATOR), 2)


def ceiling_per_s(total_ms: float, cores: int) -> float:
    """The most calls per second `cores` could run at this much CPU per call."""
    return round(cores * 1000 / total_ms, 1) if total_ms > 0 else float("inf")


def cpu_row(path: str, cost: Mapping[str, float]) -> dict[str, Any]:
    """The benchmark row of one loop's CPU per call: the mesh's total (the load generator
    is not part of it) and the ceiling it implies on this machine's cores."""
    total, cores = mesh_ms(cost), os.cpu_count() or 1
    return {"bench": "cpu", "path": path, "total_ms": total, "cores": cores} | {
        "ceiling_per_s": ceiling_per_s(total, cores),
        "by_process": dict(cost),
    }


def stack_roots(state_dir: Path) -> dict[str, int]:
    """The stack's processes by name as its supervisor last wrote them, with the supervisor."""
    state = read_state(state_dir) or {}
    procs = state.get("processes")
    roots = {
        str(name): proc["pid"]
        for name, proc in (procs.items() if isinstance(procs, dict) else [])
        if isinstance(proc, dict) and isinstance(proc.get("pid"), int)
    }
    supervisor = state.get("supervisor_pid")
    if isinstance(supervisor, int):
        roots[SUPERVISOR] = supervisor
    return roots


class Meter:
    """Snapshots of the CPU ms so far of a running stack's processes and this one."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.tick_hz = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> dict[str, float]:
        """CPU ms so far by process name; the pids are resolved now (a restart between two
        snapshots shows as the process giving CPU back, which per_call leaves out)."""
        stats = read_stats()
        groups = trees(stack_roots(self.state_dir), stats)
        taken = {name: ms_of(pids, stats, self.tick_hz) for name, pids in groups.items()}
        return taken | {LOAD_GENERATOR: self_ms()}
