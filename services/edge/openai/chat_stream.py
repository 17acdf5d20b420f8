"""One chat completion read off its Generate stream: whole, or as OpenAI's SSE chunks.

Streamed frames are `data: <chat.completion.chunk>`: first the assistant role, then one
chunk per delta, then an empty delta carrying finish_reason, then (with
`stream_options.include_usage`) a chunk with no choices and the usage, then `data: [DONE]`.
A failure after the headers went out is `data: {"error": ...}` and the stream ends, as
OpenAI's own streams do. The generation is cancelled whenever the stream ends before
the model did: the client left, or the edge is draining.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import SwitchboardError, Unavailable

from .. import codec
from ..errors import http_status, internal_error
from . import requests, wire
from .inference import GenerateStream

log = logging.getLogger(__name__)

HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE_FRAME: Final = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Completion:
    """The identity of one completion and what the client asked for."""

    id: str
    created: int
    chat: requests.ChatRequest

    async def collect(self, stream: GenerateStream) -> dict[str, Any]:
        """The whole chat.completion; raises the generation's error."""
        text: list[str] = []
        while True:
            item = await next_event(stream)
            if item.HasField("delta"):
                text.append(item.delta.text)
            else:
                return wire.completion(self.id, self.created, "".join(text), item.done)

    def chunk(self, delta: dict[str, str] | None, finish: str | None = None, **extra: Any) -> bytes:
        # Chunks name the model asked for: the one that serves is known only at the end.
        model = self.chat.start.model
        if self.chat.include_usage and "usage" not in extra:
            extra["usage"] = None
        body = wire.chunk(self.id, self.created, model, delta, finish, **extra)
        return frame(body)


async def next_event(stream: GenerateStream) -> pb.GenerateResponse:
    """The next delta or done; an error event or a stream that ends early is raised."""
    item = await stream.next()
    if item is None:
        raise Unavailable("the generate stream ended early", reason="INFERENCE_STREAM_ENDED")
    if item.HasField("error"):
        raise SwitchboardError.from_status(item.error)
    return item


def frame(body: dict[str, Any]) -> bytes:
    return b"data: " + codec.dumps(body) + b"\n\n"


def error_frame(error: SwitchboardError) -> bytes:
    status, _ = http_status(error)
    return frame(wire.error_object(error, status))


class ChatStream(Response):
    """The SSE answer of a streamed completion; it owns the Generate stream and closes it."""

    media_type = "text/event-stream"

    def __init__(
        self,
        stream: GenerateStream,
        completion: Completion,
        first: pb.GenerateResponse | None,
        draining: asyncio.Event,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        """`on_close` runs once the stream is over, however it ended (its slot's release)."""
        # Not Response.__init__: that would render an empty body with Content-Length 0.
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self._on_close = on_close
        self._stream = stream
        self._completion = completion
        self._first = first
        self._draining = draining
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tasks = [
            asyncio.ensure_future(_disconnected(receive)),
            asyncio.ensure_future(self._draining.wait()),
        ]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            tasks.append(asyncio.ensure_future(self._pump(send)))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._on_close is not None:
                self._on_close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self._finished:
                log.info("completion abandoned", extra={"fields": {"id": self._completion.id}})
            await self._stream.close([] if self._finished else [self._completion.id])
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        try:
            await write(self._completion.chunk({"role": "assistant", "content": ""}))
            await self._relay(write)
        except SwitchboardError as exc:
            self._finished = True
            log.info("completion failed", extra={"fields": {"reason": exc.reason}})
            await write(error_frame(exc))
        except OSError:
            pass  # the client left mid-write; __call__ cancels the generation
        except Exception:  # the stream's one failure point, reported in-band
            log.exception("completion stream broke")
            await write(error_frame(internal_error()))

    async def _relay(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        completion, first = self._completion, self._first
        while True:
            item = first if first is not None else await next_event(self._stream)
            first = None
            if item.HasField("delta"):
                await write(completion.chunk({"content": item.delta.text}))
                continue
            self._finished = True
            await write(completion.chunk({}, wire.finish_reason(item.done)))
            if completion.chat.include_usage:
                await write(completion.chunk(None, usage=wire.usage(item.done.usage)))
            await write(DONE_FRAME)
            return


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
