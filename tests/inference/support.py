"""Test support: the Triton process handle, the in-process service, a Generate stream client."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2_grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.inference import server
from switchboard.inference.config import Settings

WAIT_S = 15.0
RATE = 50.0  # test-streamer tokens/s in the tests: slow enough to cancel mid-way


@dataclass(frozen=True)
class TritonProcess:
    process: subprocess.Popen[bytes]
    grpc_address: str
    http_url: str
    log: Path

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def cancelled_after(self, request_id: str) -> int:
        """How many tokens test-streamer had sent when it saw this request cancelled."""
        pattern = re.compile(rf"request '{re.escape(request_id)}' cancelled after (\d+) tokens")
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if match := pattern.search(self.log.read_text(errors="replace")):
                return int(match.group(1))
            await asyncio.sleep(0.05)
        raise AssertionError(f"Triton never logged {request_id!r} as cancelled:\n{self.tail()}")


def free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Service:
    running: server.Running
    channel: grpc.aio.Channel
    settings: Settings
    stub: Any = field(init=False)
    health: Any = field(init=False)

    def __post_init__(self) -> None:
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def stream(self, metadata: tuple[tuple[str, str], ...] = ()) -> GenerateStream:
        return GenerateStream(self.stub, metadata)


@asynccontextmanager
async def running_service(
    triton_grpc: str, *, wait_serving: bool = True, **overrides: Any
) -> AsyncIterator[Service]:
    """The service started by server.start(), on a free port, stopped on exit.

    `server.build_server` does not report the port it bound, so a free one is picked first.
    """
    (port,) = free_ports(1)
    defaults = Settings(port=port, triton_grpc=triton_grpc, test_streamer_tokens_per_second=RATE)
    settings = replace(defaults, **overrides)
    running = await server.start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        if wait_serving:
            await asyncio.wait_for(asyncio.shield(running.serving), WAIT_S)
        yield Service(running, channel, settings)
    finally:
        await channel.close()
        await running.stop(0)


class GenerateStream:
    """One Generate call; requests are sent as the test decides, responses read with a bound."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._requests: asyncio.Queue[pb.GenerateRequest | None] = asyncio.Queue()
        self.call = stub.Generate(self._iterate(), metadata=metadata)
        self._responses = aiter(self.call)

    async def _iterate(self) -> AsyncIterator[pb.GenerateRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    def start(
        self, request_id: str, prompt: str, model: str = "test-streamer", **params: Any
    ) -> None:
        start = pb.GenerateStart(model=model, prompt=prompt, params=pb.SamplingParams(**params))
        self._requests.put_nowait(pb.GenerateRequest(request_id=request_id, start=start))

    def cancel(self, request_id: str) -> None:
        cancel = pb.GenerateCancel()
        self._requests.put_nowait(pb.GenerateRequest(request_id=request_id, cancel=cancel))

    def half_close(self) -> None:
        self._requests.put_nowait(None)

    async def next(self) -> pb.GenerateResponse:
        async with asyncio.timeout(WAIT_S):
            response: pb.GenerateResponse = await anext(self._responses)
        return response

    async def until_end(self, request_id: str) -> list[pb.GenerateResponse]:
        """Responses for one id up to its terminal event; other ids must not interleave."""
        events: list[pb.GenerateResponse] = []
        while not events or events[-1].WhichOneof("event") == "delta":
            response = await self.next()
            assert response.request_id == request_id, response
            events.append(response)
        return events


def unique(prefix: str) -> str:
    # Triton's log is shared by the whole session: ids must not repeat across tests.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def prompt_of(words: int) -> str:
    return " ".join(f"w{i}" for i in range(words))


def expected_tokens(prompt: str, count: int) -> list[str]:
    words = prompt.split()
    return [words[i % len(words)] + " " for i in range(count)]


def deltas(events: list[pb.GenerateResponse]) -> list[str]:
    return [e.delta.text for e in events if e.WhichOneof("event") == "delta"]


def reason_of(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    raise AssertionError(f"no ErrorInfo in {status}")


def detail_of(status: status_pb2.Status, kind: type[Any]) -> Any:
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            return message
    raise AssertionError(f"no {kind.__name__} in {status}")
