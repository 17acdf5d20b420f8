"""`/v1/chat/ws`: interactive chat over a WebSocket, many generations at once on one socket.

Client frames (JSON text): `{"type": "start", "id", "model", "messages", ...}` with the
sampling parameters of /v1/chat/completions, and `{"type": "cancel", "id"}`. Server
frames: `{"type": "delta", "id", "text"}`, then one of `{"type": "done", "id",
"finish_reason", "usage", "model"}` or `{"type": "error", "id", "error": {...}}` (OpenAI's
error object; `id` is null when the frame itself could not be read). Every socket is
multiplexed onto one Generate stream, opened at the first start, with the socket's ids as
request ids. Closing the socket cancels every generation still open; so does a draining
edge, which closes with 1001 so the client reconnects elsewhere.

Authentication is the Authorization header of the handshake, checked by the Admission
middleware like every /v1 request: a refused handshake gets HTTP 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import (
    InvalidArgument,
    ResourceExhausted,
    SwitchboardError,
    Unavailable,
)
from switchboard.common.validation import validate

from .. import codec
from ..errors import http_status, internal_error
from . import requests, wire
from .endpoints import Caller, InteractiveState, caller, error_response, json_object
from .inference import GenerateStream

log = logging.getLogger(__name__)

# Generations open at once on one socket; more is a client bug or abuse.
MAX_OPEN: Final = 16
GOING_AWAY: Final = 1001
POLICY_VIOLATION: Final = 1008
_FINISH: Final = {
    pb.FINISH_REASON_LENGTH: "length",
    pb.FINISH_REASON_CANCELLED: "cancelled",
}


async def chat_socket(websocket: WebSocket[InteractiveState]) -> None:
    try:
        who = caller(websocket.scope, websocket.headers)
        slot = await websocket.state["streams"].acquire(who.client)
    except SwitchboardError as exc:
        await _refuse(websocket, exc)
        return
    try:
        await websocket.accept()
        await ChatSocket(websocket, who).run()
    finally:
        slot.release()


async def _refuse(websocket: WebSocket[InteractiveState], error: SwitchboardError) -> None:
    """An HTTP answer to the handshake where the server can send one, else close 1008."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error))
    else:
        await websocket.close(POLICY_VIOLATION)


class ChatSocket:
    def __init__(self, websocket: WebSocket[InteractiveState], who: Caller) -> None:
        self._ws = websocket
        self._who = who
        self._inference = websocket.state["inference"]
        self._draining = websocket.state["draining"]
        self._stream: GenerateStream | None = None
        self._relay: asyncio.Task[None] | None = None
        self._open: set[str] = set()
        self._send_lock = asyncio.Lock()
        self._gone = False

    async def run(self) -> None:
        receiving = asyncio.ensure_future(self._receive())
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            done, _ = await asyncio.wait({receiving, draining}, return_when=asyncio.FIRST_COMPLETED)
            if draining in done:
                with contextlib.suppress(RuntimeError, OSError):
                    await self._ws.close(GOING_AWAY)
        finally:
            for task in (receiving, draining):
                task.cancel()
            await asyncio.gather(receiving, draining, return_exceptions=True)
            self._gone = True
            await self._close_stream()

    async def _receive(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") or message.get("bytes") or b""
            await self._handle(raw)

    async def _handle(self, raw: str | bytes) -> None:
        request_id: str | None = None
        try:
            frame = _frame(raw)
            request_id = _id(frame)
            kind = frame.get("type")
            if kind == "start":
                await self._start(request_id, frame)
            elif kind == "cancel":
                # An id not open (any more) is no error: the cancel raced the end.
                if request_id in self._open and self._stream is not None:
                    self._stream.cancel(request_id)
            else:
                raise requests.invalid("type", "must be 'start' or 'cancel'")
        except SwitchboardError as exc:
            log.info("chat frame refused", extra={"fields": {"reason": exc.reason}})
            await self._send_error(request_id, exc)

    async def _start(self, request_id: str, frame: dict[str, Any]) -> None:
        if request_id in self._open:
            raise InvalidArgument(
                f"id {request_id!r} is already open on this socket", reason="DUPLICATE_REQUEST_ID"
            )
        if len(self._open) >= MAX_OPEN:
            raise ResourceExhausted(f"at most {MAX_OPEN} generations may be open on one socket")
        start = requests.generate_start(frame)
        validate(pb.GenerateRequest(request_id=request_id, start=start))
        user = frame.get("user")
        stream = await self._generate_stream(user if isinstance(user, str) else "")
        self._open.add(request_id)
        stream.start(request_id, start)

    async def _generate_stream(self, user: str) -> GenerateStream:
        """The socket's Generate stream, (re)opened when there is none or it has ended."""
        if self._stream is None or self._stream.over or self._relay_ended():
            if self._stream is not None:
                await self._stream.close()
            self._stream = self._inference.generate(self._who.metadata(user))
            self._relay = asyncio.create_task(self._relay_responses(self._stream))
        return self._stream

    def _relay_ended(self) -> bool:
        return self._relay is not None and self._relay.done()

    async def _relay_responses(self, stream: GenerateStream) -> None:
        try:
            while (item := await stream.next()) is not None:
                await self._deliver(item)
            failure: SwitchboardError = Unavailable(
                "the generate stream ended early", reason="INFERENCE_STREAM_ENDED"
            )
        except SwitchboardError as exc:
            failure = exc
        except Exception:  # a bug here must still end every open generation with an event
            log.exception("relaying generate responses failed")
            failure = internal_error()
        # The stream is gone: whatever was open on it ends here, with its failure.
        log.info("generate stream ended", extra={"fields": {"open": len(self._open)}})
        for request_id in sorted(self._open):
            await self._send_error(request_id, failure)
        self._open.clear()

    async def _deliver(self, item: pb.GenerateResponse) -> None:
        request_id = item.request_id
        if item.HasField("delta"):
            await self._send({"type": "delta", "id": request_id, "text": item.delta.text})
            return
        self._open.discard(request_id)
        if item.HasField("error"):
            await self._send_error(request_id, SwitchboardError.from_status(item.error))
            return
        done = item.done
        await self._send(
            {
                "type": "done",
                "id": request_id,
                "finish_reason": _FINISH.get(done.finish_reason, "stop"),
                "usage": wire.usage(done.usage),
                "model": done.model,
            }
        )

    async def _send_error(self, request_id: str | None, error: SwitchboardError) -> None:
        status, _ = http_status(error)
        await self._send({"type": "error", "id": request_id, **wire.error_object(error, status)})

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._gone:
            return
        async with self._send_lock:
            try:
                await self._ws.send_text(codec.dumps(frame).decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._gone = True  # the client left; run() cancels what is open

    async def _close_stream(self) -> None:
        if self._stream is not None:
            open_ids = sorted(self._open)
            if open_ids:
                log.info(
                    "socket closed with open generations", extra={"fields": {"n": len(open_ids)}}
                )
            await self._stream.close(open_ids)
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay


def _frame(raw: str | bytes) -> dict[str, Any]:
    return json_object(raw.encode() if isinstance(raw, str) else raw, "frame")


def _id(frame: dict[str, Any]) -> str:
    request_id = frame.get("id")
    if not isinstance(request_id, str) or not request_id:
        raise requests.invalid("id", "must be a non-empty string")
    return request_id
