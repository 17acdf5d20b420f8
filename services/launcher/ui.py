"""What a person sees: a live table on a terminal, one line per change elsewhere."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table

_STYLE = {
    "ready": "green",
    "healthy": "green",
    "starting": "yellow",
    "waiting": "dim",
    "stopping": "yellow",
    "stopped": "dim",
    "restarting": "bold yellow",
    "crashloop": "bold red",
    "failed": "bold red",
    "dead": "bold red",
    "unhealthy": "red",
}


def table(title: str, rows: Sequence[Mapping[str, object]], now: float | None = None) -> Table:
    now = time.time() if now is None else now
    out = Table(title=title, title_justify="left")
    for column in (
        "process",
        "state",
        "pid",
        "ports",
        "up",
        "restarts",
        "last exit",
        "log / detail",
    ):
        out.add_column(column)
    for row in rows:
        state = str(row.get("state", ""))
        started = row.get("started_at")
        up = f"{now - started:.0f}s" if isinstance(started, float) else ""
        ports = row.get("ports") or ()
        out.add_row(
            str(row["name"]),
            f"[{_STYLE.get(state, 'white')}]{state}[/]",
            str(row.get("pid") or ""),
            ",".join(str(p) for p in ports) if isinstance(ports, (list, tuple)) else "",
            up,
            str(row.get("restarts") or 0),
            exit_status(row.get("last_exit")),
            str(row.get("detail") or row.get("log") or ""),
        )
    return out


def exit_status(code: object) -> str:
    """An exit status as asyncio reports it: -9 is "SIGKILL", 3 is "3"."""
    if not isinstance(code, int):
        return ""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


class LinePrinter:
    """For logs and CI: print each process's state when it changes."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def update(self, stack_state: str, rows: Sequence[Mapping[str, object]]) -> None:
        for row in [{"name": "stack", "state": stack_state}, *rows]:
            name, state = str(row["name"]), str(row.get("state"))
            if self.seen.get(name) != state:
                self.seen[name] = state
                detail = row.get("detail") or ""
                print(f"{time.strftime('%H:%M:%S')} {name:<10} {state} {detail}".rstrip())
                sys.stdout.flush()


def console() -> Console:
    # Off a terminal (pipes, CI) rich would wrap at 80 columns and split rows.
    return Console() if sys.stdout.isatty() else Console(width=200)
