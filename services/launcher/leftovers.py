"""What a process group leaves behind when it is killed outright: POSIX shared memory.

Triton's Python-backend stubs each share a region in /dev/shm with the server. A graceful
stop removes them; SIGKILL cannot (seen: 1 MiB per model, seven regions per kill, kept
until reboot). The supervisor notes the regions a group maps once it is ready, and
removes them once the group is dead.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

SHM = "/dev/shm/"
_PROC = Path("/proc")


def group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command may hold spaces and parentheses; the fields after it do not.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def shared_memory(pgid: int) -> set[Path]:
    """The /dev/shm files that the group's processes map now."""
    found = set()
    for pid in group(pgid):
        with contextlib.suppress(OSError):
            for line in (_PROC / str(pid) / "maps").read_text().splitlines():
                path = line.split(maxsplit=5)[5:]
                if path and path[0].startswith(SHM) and not path[0].endswith("(deleted)"):
                    found.add(Path(path[0]))
    return found


def remove(paths: set[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
