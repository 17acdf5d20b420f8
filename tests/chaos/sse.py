"""A strict Server-Sent Events reader: an event counts only once its blank line arrived, and
its id is the `id:` field of that very event (not the inherited last id), so an event the
edge sent without a cursor shows up instead of silently borrowing the previous one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]

    @property
    def terminal_state(self) -> str | None:
        if self.type != "state_changed":
            return None
        state = str(self.data.get("stateChanged", {}).get("state", ""))
        return state if state in TERMINAL else None


TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


async def events(lines: AsyncIterable[str]) -> AsyncIterator[Event]:
    """Every dispatched event with data; comments (heartbeats) and `retry:` frames skipped."""
    event_id, event_type, data = "", "", list[str]()
    async for line in lines:
        if not line:
            if data:
                payload = json.loads("\n".join(data))
                yield Event(event_id, event_type or "message", payload)
            event_id, event_type, data = "", "", list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
