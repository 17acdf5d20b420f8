"""The edge app driven at the ASGI level from synchronous code (Hypothesis tests are
synchronous): the app, its lifespan, a stand-in planner and a stand-in inference service run
on an event loop in a thread of their own, on real gRPC servers.

At the ASGI level a test can send what no HTTP client would (any header bytes, any path
text, any query bytes), which is a superset of what uvicorn lets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import quote

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from starlette.applications import Starlette

from switchboard.api.jobs.v1 import jobs_pb2_grpc
from switchboard.common.grpcserver import ServiceInterceptor, set_serving
from switchboard.edge.app import create_app
from switchboard.edge.planner import SERVICE

from ..planner.support import serving
from .conftest import StandInPlanner, settings_for
from .inference_standin import ChatInference

T = TypeVar("T")
# One request's longest life here; far above what any answer takes in-process.
CALL_SECONDS = 20.0
Headers = Sequence[tuple[bytes, bytes]]


@dataclass
class Answer:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    # What escaped the app, if anything (Starlette re-raises after its 500).
    error: BaseException | None = None


@dataclass
class SocketAnswer:
    accepted: bool = False
    # A refused handshake: the HTTP status of the denial response, or None for a close.
    denied: int | None = None
    frames: list[str] = field(default_factory=list)
    error: BaseException | None = None


class Harness:
    """The edge app with stand-ins, on a loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self.planner = StandInPlanner()
        self.inference = ChatInference()
        self.app: Starlette | None = None
        self.state: Mapping[str, Any] = {}

    def run(self, coro: Awaitable[T], timeout: float = CALL_SECONDS) -> T:
        async def wrapped() -> T:
            return await coro

        future = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    def stop(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CALL_SECONDS)
            self.loop.close()

    async def _start(self) -> None:
        server = grpc.aio.server(interceptors=[ServiceInterceptor()])
        jobs_pb2_grpc.add_JobServiceServicer_to_server(self.planner, server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._stack.push_async_callback(server.stop, None)
        await set_serving(health, [SERVICE], True)
        self.planner.address = f"127.0.0.1:{port}"
        inference = await self._stack.enter_async_context(serving(self.inference))
        settings = dataclasses.replace(
            settings_for(self.planner.address), inference_address=inference
        )
        self.app = create_app(settings)
        # The app's own lifespan (create_app's), which yields the state every request gets.
        lifespan = cast(
            contextlib.AbstractAsyncContextManager[Mapping[str, Any]],
            self.app.router.lifespan_context(self.app),
        )
        self.state = await self._stack.enter_async_context(lifespan)

    def http(self, method: str, path: str, query: bytes, headers: Headers, body: bytes) -> Answer:
        try:
            return self.run(self._http(method, path, query, headers, body))
        except TimeoutError:
            asked = f"{method} {path} {query!r} {headers!r} {body[:200]!r}"
            raise AssertionError(f"no answer within {CALL_SECONDS} s: {asked}") from None

    def websocket(self, path: str, headers: Headers, frames: Sequence[str | bytes]) -> SocketAnswer:
        return self.run(self._websocket(path, headers, frames))

    def _scope(self, kind: str, path: str, query: bytes, headers: Headers) -> dict[str, Any]:
        return {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "http" if kind == "http" else "ws",
            "path": path,
            "raw_path": quote(path, safe="/").encode("ascii"),
            "query_string": query,
            "root_path": "",
            "headers": list(headers),
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
            "state": dict(self.state),
        }

    async def _http(
        self, method: str, path: str, query: bytes, headers: Headers, body: bytes
    ) -> Answer:
        assert self.app is not None
        answer = Answer()
        started = asyncio.Event()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            # The client stays until the answer starts, then leaves (ending any stream).
            await started.wait()
            return {"type": "http.disconnect"}

        async def send(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
                started.set()
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        scope = {**self._scope("http", path, query, headers), "method": method}
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 (what escapes the app is the finding)
            answer.error = exc
        return answer

    async def _websocket(
        self, path: str, headers: Headers, frames: Sequence[str | bytes]
    ) -> SocketAnswer:
        assert self.app is not None
        answer = SocketAnswer()
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "websocket.connect"})

        async def receive() -> dict[str, Any]:
            return await inbox.get()

        async def send(message: Mapping[str, Any]) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                answer.accepted = True
                for frame in frames:
                    key = "text" if isinstance(frame, str) else "bytes"
                    inbox.put_nowait({"type": "websocket.receive", key: frame})
                inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
            elif kind == "websocket.send":
                answer.frames.append(message.get("text") or "")
            elif kind == "websocket.http.response.start":
                answer.denied = message["status"]
            elif kind == "websocket.close" and not answer.accepted:
                answer.denied = None

        scope = {
            **self._scope("websocket", path, b"", headers),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 (what escapes the app is the finding)
            answer.error = exc
        return answer


@contextlib.contextmanager
def harness() -> Iterator[Harness]:
    edge = Harness()
    edge.start()
    try:
        yield edge
    finally:
        edge.stop()
