"""How the CLI shows a job's events: tokens live on stdout, everything else on stderr, a
progress bar while progress events come (an ingest's stages); or one JSON line per event."""

from __future__ import annotations

import json
import sys
from types import TracebackType
from typing import Any, TextIO

from httpx_sse import ServerSentEvent
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .rest import event_json, payload


class EventPrinter:
    """Renders one watch; `ended_state` is the terminal state it saw, if any."""

    def __init__(
        self, *, as_json: bool, show_states: bool = True, out: TextIO | None = None
    ) -> None:
        self.as_json = as_json
        self.show_states = show_states
        self.out = out or sys.stdout
        self.err = Console(stderr=True, highlight=False)
        self.ended_state = ""
        self.error: dict[str, Any] = {}
        self._progress: Progress | None = None
        self._bars: dict[str, TaskID] = {}
        self._mid_line = False

    def __enter__(self) -> EventPrinter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._end_line()

    def show(self, event: ServerSentEvent) -> None:
        if self.as_json:
            self.out.write(
                json.dumps({"id": event.id, "event": event.event, "data": event_json(event)}) + "\n"
            )
            self.out.flush()
        body = payload(event)
        if event.event == "state_changed":
            self._state(body)
        elif event.event == "error":
            self.error = event_json(event).get("error", {})
            self._note(f"error: {self.error.get('message', event.data)}", "red")
        elif self.as_json:
            return
        elif event.event == "token":
            self.out.write(str(body.get("text", "")))
            self.out.flush()
            self._mid_line = True
        elif event.event == "progress":
            self._advance(body)
        elif event.event == "log":
            self._note(f"[{body.get('stage') or 'job'}] {body.get('message', '')}", "dim")
        elif event.event == "gap":
            self._note("(some early events are no longer stored)", "yellow")

    def _state(self, body: dict[str, Any]) -> None:
        state = str(body.get("state", ""))
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            self.ended_state = state
            self.error = body.get("error", {}) or self.error
        if self.as_json or not (self.show_states or state == "FAILED"):
            return
        detail = f": {self.error.get('message')}" if state == "FAILED" and self.error else ""
        self._note(f"{state.lower()}{detail}", "red" if state == "FAILED" else "cyan")

    def _advance(self, body: dict[str, Any]) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=self.err,
            )
            self._progress.start()
        stage = str(body.get("stage") or "job")
        if stage not in self._bars:
            self._bars[stage] = self._progress.add_task(stage, total=1.0)
        fraction = float(body.get("fraction", 0.0))
        text = f"{stage} {body.get('message', '')}".strip()
        self._progress.update(self._bars[stage], completed=fraction, description=text)

    def _note(self, text: str, style: str) -> None:
        self._end_line()
        if self._progress is not None:
            self._progress.console.print(text, style=style)
        else:
            self.err.print(text, style=style)

    def _end_line(self) -> None:
        if self._mid_line:
            self.out.write("\n")
            self.out.flush()
            self._mid_line = False
