"""A stack's processes as `state.json` records them: what the supervisor writes and what
`status`, `down` and the tests read back, also after the supervisor itself is gone."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ProcState:
    name: str
    # waiting, starting, ready, restarting (waiting out its backoff), crashloop (died too
    # often; left down), failed (never became ready), stopping, stopped
    state: str = "waiting"
    pid: int | None = None
    ports: tuple[int, ...] = ()
    log: str = ""
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    detail: str = ""
    # Starts after the first, automatic and by hand.
    restarts: int = 0
    # The exit status of the last death as asyncio reports it (negative: the signal).
    last_exit: int | None = None


def read_state(state_dir: Path) -> dict[str, object] | None:
    try:
        data = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); /proc tells the truth.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
