"""Server-sent events as the REST benchmarks read them, and the arithmetic on their figures.

Kept apart from the code that talks to a mesh, so that tests can check it without one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class Frame:
    event: str
    id: str
    data: str

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError(f"frame data is not a JSON object: {self.data[:80]!r}")
        return value


class FrameReader:
    """Frames from an event stream's lines (line ends stripped), by the event-stream rules
    the edge's SSE and OpenAI's streamed chat both follow: `event`, `id` and `data` fields
    (several `data` lines joined by newlines), `:` comments (heartbeats) skipped, and a
    blank line ending a frame; a frame without data is no frame."""

    def __init__(self) -> None:
        self._event = ""
        self._id = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Frame | None:
        if not line:
            frame = None
            if self._data:
                frame = Frame(self._event or "message", self._id, "\n".join(self._data))
            self._event, self._data = "", []
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value  # the last id seen stays the stream's, as EventSource keeps it
        return None


def is_terminal(event: dict[str, Any]) -> bool:
    """Whether a JobEvent (as JSON) is the job's terminal state change."""
    changed = event.get("stateChanged")
    return isinstance(changed, dict) and changed.get("state") in TERMINAL_STATES


def stored_ms(cursor: str) -> int:
    """When Valkey stored the event, in ms since the epoch: its cursor is the stream entry id
    `<ms>-<seq>` that XADD `*` made from Valkey's clock."""
    ms, sep, seq = cursor.partition("-")
    if not (sep and ms.isdigit() and seq.isdigit()):
        raise ValueError(f"not a stream entry id: {cursor!r}")
    return int(ms)


def since_stored_ms(cursor: str, arrival_ns: int) -> float:
    """Milliseconds from the event being stored to `arrival_ns` (time.time_ns() on the same
    machine). The entry id keeps whole milliseconds, so this reads up to 1 ms long."""
    return arrival_ns / 1e6 - stored_ms(cursor)


def ratio(value: float, base: float) -> str:
    """`value` against `base` as the tables print it: `3.2x`; empty when there is no base."""
    if not base or base != base or value != value:  # zero or NaN
        return ""
    return f"{value / base:.2f}x" if value / base < 10 else f"{value / base:.1f}x"


def added(value: float, base: float) -> str:
    """What `value` adds over `base`, in ms: `+12.3`; empty when either is NaN."""
    if base != base or value != value:
        return ""
    return f"{value - base:+.1f}"
