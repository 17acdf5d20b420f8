"""The test models served by a real tritonserver, launched the way the inference service does."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from switchboard.inference import triton_launch

from ..stack import free_ports

READY_TIMEOUT_S = 120.0
STREAM_TIMEOUT_S = 30.0
MODELS = ("test-streamer", "test-fail")


@dataclass(frozen=True)
class Triton:
    process: subprocess.Popen[bytes]
    grpc_url: str
    http_url: str
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _wait_ready(server: Triton) -> float:
    started = time.monotonic()
    urls = [f"{server.http_url}/v2/health/ready"]
    urls += [f"{server.http_url}/v2/models/{name}/ready" for name in MODELS]
    while time.monotonic() - started < READY_TIMEOUT_S:
        if server.process.poll() is not None:
            pytest.fail(
                f"tritonserver exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        if all(_is_ready(url) for url in urls):
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"tritonserver not ready after {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    layout = triton_launch.prepare(tmp_path_factory.mktemp("triton"))
    grpc_port, http_port, metrics_port = free_ports(3)
    argv = triton_launch.command(
        layout, grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port
    )
    log = layout.root / "tritonserver.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            env=triton_launch.environment(os.environ),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Triton(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log)
    try:
        ready_after = _wait_ready(server)
        print(f"tritonserver ready after {ready_after:.2f} s")
        yield server
    finally:
        _stop(process)


def _tensor(name: str, datatype: str, value: Any, dtype: Any) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], datatype)
    tensor.set_data_from_numpy(np.array([value], dtype=dtype))
    return tensor


def _inputs(
    prompt: str,
    *,
    max_tokens: int | None = None,
    tokens_per_second: float | None = None,
) -> list[grpcclient.InferInput]:
    inputs = [_tensor("PROMPT", "BYTES", prompt.encode(), np.object_)]
    if max_tokens is not None:
        inputs.append(_tensor("MAX_TOKENS", "INT32", max_tokens, np.int32))
    if tokens_per_second is not None:
        inputs.append(_tensor("TOKENS_PER_SECOND", "FP32", tokens_per_second, np.float32))
    return inputs


async def _one_request(
    model: str, inputs: list[grpcclient.InferInput], request_id: str
) -> AsyncIterator[dict[str, Any]]:
    yield {"model_name": model, "inputs": inputs, "request_id": request_id}


def _is_final(result: grpcclient.InferResult) -> bool:
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


def _text(result: grpcclient.InferResult, name: str) -> str:
    value = result.as_numpy(name)
    assert value is not None, f"response has no {name}"
    return bytes(value[0]).decode()


def _int(result: grpcclient.InferResult, name: str) -> int:
    value = result.as_numpy(name)
    assert value is not None, f"response has no {name}"
    return int(value[0])


async def _stream(
    server: Triton, model: str, inputs: list[grpcclient.InferInput], request_id: str
) -> list[tuple[grpcclient.InferResult | None, InferenceServerException | None]]:
    """Every (result, error) of one request's stream, read until the server ends the stream.

    Reading to the end rather than cancelling after the final response matters: a cancel that
    races the stream's completion can leave Triton holding the model, so its shutdown then
    waits out --exit-timeout-secs.
    """
    client = aioclient.InferenceServerClient(server.grpc_url)
    try:
        stream = client.stream_infer(_one_request(model, inputs, request_id))
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            return [item async for item in stream]
    finally:
        await client.close()


async def _generate(
    server: Triton, prompt: str, request_id: str, **options: Any
) -> list[grpcclient.InferResult]:
    """All responses of one generation, the final one last."""
    items = await _stream(server, "test-streamer", _inputs(prompt, **options), request_id)
    assert [error for _, error in items if error is not None] == []
    results = [result for result, _ in items if result is not None]
    assert results, "no responses"
    assert [_is_final(r) for r in results] == [False] * (len(results) - 1) + [True]
    return results


def _expected_tokens(prompt: str, count: int) -> list[str]:
    words = prompt.split()
    return [words[i % len(words)] + " " for i in range(count)]


@pytest.mark.asyncio
async def test_streamer_streams_deterministic_tokens_then_stop(triton: Triton) -> None:
    prompt = "the quick brown fox"
    *tokens, final = await _generate(triton, prompt, "stop-1")

    assert [_text(r, "TEXT") for r in tokens] == _expected_tokens(prompt, 8)
    assert all(r.as_numpy("FINISH_REASON") is None for r in tokens)
    assert _text(final, "TEXT") == ""
    assert _text(final, "FINISH_REASON") == "stop"
    assert _int(final, "PROMPT_TOKENS") == 4
    assert _int(final, "COMPLETION_TOKENS") == 8


@pytest.mark.asyncio
@pytest.mark.parametrize("max_tokens", [3, 0])
async def test_streamer_max_tokens_gives_length(triton: Triton, max_tokens: int) -> None:
    prompt = "one two three"
    *tokens, final = await _generate(triton, prompt, f"length-{max_tokens}", max_tokens=max_tokens)

    assert [_text(r, "TEXT") for r in tokens] == _expected_tokens(prompt, max_tokens)
    assert _text(final, "FINISH_REASON") == "length"
    assert _int(final, "PROMPT_TOKENS") == 3
    assert _int(final, "COMPLETION_TOKENS") == max_tokens


@pytest.mark.asyncio
async def test_streamer_rejects_negative_max_tokens(triton: Triton) -> None:
    items = await _stream(triton, "test-streamer", _inputs("a b", max_tokens=-1), "negative")

    assert len(items) == 1
    result, error = items[0]
    assert result is None
    assert isinstance(error, InferenceServerException)
    assert "MAX_TOKENS must be >= 0" in str(error.message())


async def _drain_after_cancel(stream: Any) -> int:
    """Tokens that still arrive after ``stream.cancel()``; the call ends by raising."""
    late = 0
    try:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for _result, _error in stream:
                late += 1
    except asyncio.CancelledError:
        # grpc.aio reports its own cancelled call this way; a real task cancel must propagate.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    return late


async def _log_line(server: Triton, pattern: re.Pattern[str]) -> re.Match[str]:
    deadline = time.monotonic() + STREAM_TIMEOUT_S
    while time.monotonic() < deadline:
        if match := pattern.search(server.log.read_text(errors="replace")):
            return match
        await asyncio.sleep(0.05)
    pytest.fail(f"no log line matching {pattern.pattern!r}:\n{server.log_tail()}")


@pytest.mark.asyncio
async def test_streamer_cancel_stops_generation(triton: Triton) -> None:
    prompt = " ".join(f"w{i}" for i in range(50))  # 100 tokens: 2 s at 50 tokens/s
    client = aioclient.InferenceServerClient(triton.grpc_url)
    received: list[str] = []
    try:
        stream = client.stream_infer(
            _one_request("test-streamer", _inputs(prompt, tokens_per_second=50), "cancel-me")
        )
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for result, error in stream:
                assert error is None, f"stream error: {error}"
                received.append(_text(result, "TEXT"))
                if len(received) == 3:
                    break
        stream.cancel()
        late = await _drain_after_cancel(stream)
    finally:
        await client.close()

    assert received == _expected_tokens(prompt, 3)
    assert late <= 2
    # The server side stopped too, within a couple of tokens of the cancel.
    match = await _log_line(triton, re.compile(r"request 'cancel-me' cancelled after (\d+) tokens"))
    assert int(match.group(1)) <= len(received) + 2
    # And it still serves.
    *_tokens, final = await _generate(triton, "still alive", "after-cancel")
    assert _text(final, "FINISH_REASON") == "stop"
    assert _int(final, "COMPLETION_TOKENS") == 4


FAIL_MESSAGE = "test-fail: this model always fails"


@pytest.mark.asyncio
async def test_fail_model_unary_error(triton: Triton) -> None:
    client = aioclient.InferenceServerClient(triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as raised:
            await asyncio.wait_for(client.infer("test-fail", _inputs("boom")), STREAM_TIMEOUT_S)
    finally:
        await client.close()

    assert FAIL_MESSAGE in str(raised.value.message())
    assert raised.value.status() == "StatusCode.INTERNAL"


@pytest.mark.asyncio
async def test_fail_model_stream_error(triton: Triton) -> None:
    items = await _stream(triton, "test-fail", _inputs("boom"), "fail-stream")

    assert len(items) == 1
    result, error = items[0]
    assert result is None
    assert isinstance(error, InferenceServerException)
    assert FAIL_MESSAGE in str(error.message())
