"""Test support: the Triton process handle, the in-process service, a Generate stream client."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import tritonclient.grpc.aio as triton_aio
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2_grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.inference import server, triton_launch
from switchboard.inference.config import Settings
from switchboard.inference.models import Catalog
from switchboard.inference.routing import Router

from ..stack import free_ports

WAIT_S = 30.0  # real models share 2 cores with everything else
TRITON_READY_TIMEOUT_S = 120.0
TRITON_MODELS = (
    "test-streamer",
    "test-fail",
    "test-echo-embed",
    "test-hang",
    "smollm2-135m-instruct",
    "all-minilm-l6-v2",
    "ppocr-v4",
)
# The tests opt in to the test models, as the local stack does, and the canary proves one.
TEST_CANARY_ROUTES = "default-chat,default-embed,test-streamer"
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
        """How many tokens a streaming model had sent when it saw this request cancelled."""
        pattern = rf"request '{re.escape(request_id)}' cancelled after (\d+) tokens"
        return int((await self.logged(pattern)).group(1))

    async def logged(self, pattern: str) -> re.Match[str]:
        """The first line of Triton's log matching `pattern`, waiting for it a bounded time."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if match := compiled.search(self.log.read_text(errors="replace")):
                return match
            await asyncio.sleep(0.05)
        raise AssertionError(f"Triton never logged {pattern!r}:\n{self.tail()}")

    async def inference_count(self, model: str) -> int:
        """Requests Triton has run on a model, failed ones included (its statistics)."""
        client = triton_aio.InferenceServerClient(self.grpc_address)
        try:
            stats = await client.get_inference_statistics(model, as_json=True)
        finally:
            await client.close()
        return int(stats["model_stats"][0].get("inference_count", 0))


def launch_triton(state_dir: Path) -> TritonProcess:
    """The real tritonserver from nvidia-pytriton, on CPU, with our model repository, ready."""
    layout = triton_launch.prepare(state_dir, test_models=True)
    grpc_port, http_port, metrics_port = free_ports(3)
    argv = triton_launch.command(
        layout, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port
    )
    log = layout.root / "tritonserver.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv, env=triton_launch.environment(os.environ), stdout=sink, stderr=subprocess.STDOUT
        )
    triton = TritonProcess(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log)
    try:
        _wait_ready(triton)
    except BaseException:
        stop_triton(triton)
        raise
    return triton


def _is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_ready(triton: TritonProcess) -> None:
    urls = [f"{triton.http_url}/v2/health/ready"]
    urls += [f"{triton.http_url}/v2/models/{name}/ready" for name in TRITON_MODELS]
    deadline = time.monotonic() + TRITON_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if triton.process.poll() is not None:
            raise AssertionError(f"tritonserver exited early:\n{triton.tail()}")
        if all(_is_ready(url) for url in urls):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"tritonserver not ready in {TRITON_READY_TIMEOUT_S:.0f} s:\n{triton.tail()}"
    )


def stop_triton(triton: TritonProcess) -> float:
    """SIGTERM, then SIGKILL if it hangs; returns the seconds it took to exit."""
    started = time.monotonic()
    triton.process.terminate()
    try:
        triton.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        triton.process.kill()
        triton.process.wait(timeout=10)
    return time.monotonic() - started


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

    @property
    def router(self) -> Router:
        return self.running.router

    def stream(self, metadata: tuple[tuple[str, str], ...] = ()) -> GenerateStream:
        return GenerateStream(self.stub, metadata)


@asynccontextmanager
async def running_service(
    triton_grpc: str,
    *,
    wait_serving: bool = True,
    catalog: Catalog | None = None,
    **overrides: Any,
) -> AsyncIterator[Service]:
    """The service started by server.start(), on a free port, stopped on exit.

    `server.build_server` does not report the port it bound, so a free one is picked first.
    """
    (port,) = free_ports(1)
    defaults = Settings(
        port=port,
        triton_grpc=triton_grpc,
        test_models=True,
        canary_routes=TEST_CANARY_ROUTES,
        test_streamer_tokens_per_second=RATE,
    )
    settings = replace(defaults, **overrides)
    running = await server.start(settings, catalog)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        if wait_serving:
            await asyncio.wait_for(asyncio.shield(running.serving), WAIT_S)
        yield Service(running, channel, settings)
    finally:
        await channel.close(None)
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

    def chat(
        self, request_id: str, messages: list[tuple[str, str]], model: str, **params: Any
    ) -> None:
        turns = [pb.ChatMessage(role=role, content=content) for role, content in messages]
        start = pb.GenerateStart(model=model, messages=turns, params=pb.SamplingParams(**params))
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


async def drain_after_cancel(stream: Any) -> int:
    """Responses that still arrive on a tritonclient stream after `stream.cancel()`."""
    late = 0
    try:
        async with asyncio.timeout(WAIT_S):
            async for _result, _error in stream:
                late += 1
    except asyncio.CancelledError:
        # grpc.aio ends its own cancelled call this way; a real task cancel must propagate.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    return late


def output_text(result: Any, name: str) -> str:
    """A [1]-shaped BYTES output of a Triton response, decoded."""
    value = result.as_numpy(name)
    assert value is not None, f"response has no {name}"
    return bytes(value[0]).decode()


def output_int(result: Any, name: str) -> int:
    value = result.as_numpy(name)
    assert value is not None, f"response has no {name}"
    return int(value[0])


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


def status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status a server sent with a failed call."""
    # grpc.aio hands back its Metadata mapping; the stubs type it as a tuple.
    metadata: Any = error.trailing_metadata()
    value = metadata.get("grpc-status-details-bin")
    assert isinstance(value, bytes), f"no rich status in {error!r}"
    return status_pb2.Status.FromString(value)


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


class TcpProxy:
    """A TCP forwarder to Triton that a test can cut and restore: a real outage on the wire."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        (self.port,) = free_ports(1)
        self.address = f"127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stops listening and drops every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
