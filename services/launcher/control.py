"""How `switchboard restart` asks a running supervisor to restart one process.

A request is a small file in the stack's state folder, and SIGUSR1 to the supervisor says
"look now". Not a Unix socket: a socket's path is limited to 108 bytes, which deep state
folders (pytest's temporary folders) overrun, and the supervisor would need a server for
one verb. The answer needs no channel of its own: the CLI reads state.json, as every
observer does, until the process shows a new start in state `ready` (or a failure).
Signals carry nothing and coalesce, so the supervisor takes every pending file each time.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

SIGNAL = signal.SIGUSR1
REQUESTS = "requests"
# Only a process past its first start can be restarted; one still starting is the
# stack's start-up, which fails as a whole.
RESTARTABLE = ("ready", "restarting", "crashloop")


def send(state_dir: Path, supervisor_pid: int, name: str) -> None:
    folder = state_dir / REQUESTS
    folder.mkdir(parents=True, exist_ok=True)
    request = uuid.uuid4().hex
    tmp = folder / f".{request}.tmp"
    tmp.write_text(json.dumps({"process": name}))
    tmp.replace(folder / f"{request}.restart")  # whole, or not there at all
    os.kill(supervisor_pid, SIGNAL)


def take(state_dir: Path) -> list[str]:
    """The processes asked for since the last call, oldest first; the requests are gone."""
    names = []
    folder = state_dir / REQUESTS
    for path in sorted(folder.glob("*.restart"), key=_mtime):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        path.unlink(missing_ok=True)
        if isinstance(data, dict) and isinstance(data.get("process"), str):
            names.append(data["process"])
    return names


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
