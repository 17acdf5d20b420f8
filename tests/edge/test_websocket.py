"""`/v1/chat/ws` over a real WebSocket (the `websockets` client) to the real edge under
uvicorn, with the stand-in inference service of tests/edge/inference_standin.py on a real
gRPC server. The socket against the real mesh: tests/e2e/test_openai.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from switchboard.edge.server import EdgeServer

from ..planner.support import eventually
from .conftest import API_KEY, CLIENT, WAIT_SECONDS
from .inference_standin import ChatInference

USER = [{"role": "user", "content": "hello brave new world"}]


def url(edge: EdgeServer) -> str:
    return f"ws://127.0.0.1:{edge.port}/v1/chat/ws"


@pytest_asyncio.fixture
async def socket(edge: EdgeServer) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Session-Id": "chat-7"}
    async with connect(url(edge), additional_headers=headers, open_timeout=WAIT_SECONDS) as ws:
        yield ws


async def send(ws: ClientConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
    assert isinstance(frame, dict)
    return frame


async def until_ended(ws: ClientConnection, ids: set[str]) -> dict[str, dict[str, Any]]:
    """Frames until every id in `ids` got done or error; the last frame of each id."""
    ended: dict[str, dict[str, Any]] = {}
    while set(ended) != ids:
        frame = await receive(ws)
        if frame["type"] in ("done", "error"):
            ended[frame["id"]] = frame
    return ended


async def cancelled(fake: ChatInference, request_id: str) -> None:
    async def seen() -> bool:
        return request_id in fake.cancels

    await eventually(seen, WAIT_SECONDS)


@pytest.mark.asyncio
async def test_generations_share_one_socket_and_one_stream(
    socket: ClientConnection, fake: ChatInference
) -> None:
    await send(socket, type="start", id="slow-1", model="slow", messages=USER)
    await send(socket, type="start", id="echo-1", model="echo", messages=USER, max_tokens=9)
    text = {"slow-1": "", "echo-1": ""}
    ended: dict[str, dict[str, Any]] = {}
    while len(ended) < 2:
        frame = await receive(socket)
        if frame["type"] == "delta":
            text[frame["id"]] += frame["text"]
        else:
            ended[frame["id"]] = frame
        # The echo is over while the slow one still streams: cancel that one only.
        if "echo-1" in ended and len(text["slow-1"].split()) >= 3 and not fake.cancels:
            await send(socket, type="cancel", id="slow-1")
            await cancelled(fake, "slow-1")

    assert text["echo-1"] == "hello brave new world"
    echo = ended["echo-1"]
    assert echo["type"] == "done" and echo["finish_reason"] == "stop"
    assert echo["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    assert ended["slow-1"]["finish_reason"] == "cancelled"
    assert fake.cancels == ["slow-1"]
    assert fake.started[1].params.max_tokens == 9
    (stream,) = {tuple(sorted(s.metadata.items())) for s in fake.starts}
    metadata = dict(stream)
    assert (metadata["x-client-id"], metadata["x-session-id"]) == (CLIENT, "chat-7")
    assert len(fake.starts) == 2


@pytest.mark.asyncio
async def test_bad_frames_get_errors_and_the_socket_lives_on(socket: ClientConnection) -> None:
    await socket.send("{not json")
    unreadable = await receive(socket)
    assert (unreadable["type"], unreadable["id"]) == ("error", None)
    assert unreadable["error"]["code"] == "malformed_request"

    await send(socket, type="start", id="x", model="nope", messages=USER)
    unknown = await receive(socket)
    assert (unknown["type"], unknown["id"], unknown["error"]["code"]) == (
        "error",
        "x",
        "model_not_found",
    )

    await send(socket, type="start", id="y", model="echo", messages=USER, temperature=9)
    bad = await receive(socket)
    assert (bad["id"], bad["error"]["param"]) == ("y", "temperature")
    await send(socket, type="bounce", id="z")
    assert (await receive(socket))["error"]["param"] == "type"

    await send(socket, type="cancel", id="never-started")
    await send(socket, type="start", id="ok", model="echo", messages=USER)
    assert (await until_ended(socket, {"ok"}))["ok"]["type"] == "done"


@pytest.mark.asyncio
async def test_an_id_already_open_is_refused(socket: ClientConnection) -> None:
    await send(socket, type="start", id="twice", model="slow", messages=USER)
    await send(socket, type="start", id="twice", model="echo", messages=USER)
    while (frame := await receive(socket))["type"] == "delta":
        pass
    assert (frame["type"], frame["error"]["code"]) == ("error", "duplicate_request_id")
    await send(socket, type="cancel", id="twice")
    assert (await until_ended(socket, {"twice"}))["twice"]["finish_reason"] == "cancelled"


@pytest.mark.asyncio
async def test_closing_the_socket_cancels_what_is_open(
    socket: ClientConnection, fake: ChatInference
) -> None:
    await send(socket, type="start", id="a", model="slow", messages=USER)
    await send(socket, type="start", id="b", model="silent", messages=USER)
    assert (await receive(socket))["type"] == "delta"
    await socket.close()

    await cancelled(fake, "a")
    await cancelled(fake, "b")


@pytest.mark.asyncio
async def test_a_draining_edge_closes_sockets_going_away(
    edge: EdgeServer, socket: ClientConnection, fake: ChatInference
) -> None:
    await send(socket, type="start", id="a", model="slow", messages=USER)
    assert (await receive(socket))["type"] == "delta"
    edge.draining.set()

    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await receive(socket)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    await cancelled(fake, "a")


@pytest.mark.asyncio
async def test_a_handshake_without_a_key_is_refused(edge: EdgeServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url(edge), open_timeout=WAIT_SECONDS):
            pass
    assert refused.value.response.status_code == 403
