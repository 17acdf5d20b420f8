"""What the lifespan hands every request, as far as both rooms of the edge read it.

The job API (`handlers`) and the OpenAI package (`openai`) each extend `EdgeState` with their
own channels; the app yields the union (`app.AppState`). Both import this module and neither
imports the other, so the part they share lives here, beside nothing else.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from .streams import StreamSlots


class EdgeState(TypedDict):
    """`request.state[...]` entries every room uses."""

    # Set on shutdown: open streams (SSE, streamed completions, sockets) end.
    draining: asyncio.Event
    # The per-client cap on open streams, shared by SSE and the chat routes.
    streams: StreamSlots
