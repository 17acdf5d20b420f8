"""Inference benchmark: Triton direct vs through the inference service vs through Envoy.

    python -m benchmarks.inference [--quick] [--write docs/benchmarks.md]

Starts one local mesh with the launcher (the same processes as `switchboard up`) on free
ports and drives the same Triton three ways in one run, so the ratios compare like with
like. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput

from benchmarks.report import report_markdown, with_head
from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.launcher import background
from switchboard.launcher.ports import free_block

from .figures import Figures, closed_loop, pct

EMBED_MODEL = "all-minilm-l6-v2"
if TYPE_CHECKING:  # the async stub type exists only in the generated stubs
    Stub = inference_pb2_grpc.InferenceServiceAsyncStub
TEXT = "Switchboard routes every request to the right model, fast."
CHAT_MODELS = {"test-streamer": "raw", "smollm2-135m-instruct": "chat"}


async def load(
    concurrency: int, total: int, call: Callable[[], Awaitable[None]]
) -> dict[str, float]:
    """Runs `total` calls with `concurrency` in flight; latency in ms, throughput per s."""
    loop = await closed_loop(concurrency, total, call)
    latencies = loop.ms
    return {
        "p50_ms": round(pct(latencies, 50), 2),
        "p99_ms": round(pct(latencies, 99), 2),
        "per_s": loop.per_s,
    }


# --- the three ways to embed ---------------------------------------------------------------


def direct_embed(client: triton_aio.InferenceServerClient) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        text = InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[TEXT.encode()]], dtype=object))
        result = await client.infer(EMBED_MODEL, [text])
        assert result.as_numpy("EMBEDDING").shape[-1] == 384

    return call


def service_embed(stub: Stub) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        reply = await stub.Embed(pb.EmbedRequest(model=EMBED_MODEL, texts=[TEXT]))
        assert len(reply.embeddings[0].values) == 384

    return call


async def batch_counts(client: triton_aio.InferenceServerClient, model: str) -> tuple[int, int]:
    """(inferences, executions) so far: their ratio is Triton's average batch size."""
    stats = await client.get_inference_statistics(model, as_json=True)
    entry = stats["model_stats"][0]
    return int(entry.get("inference_count", 0)), int(entry.get("execution_count", 0))


# --- the three ways to stream tokens --------------------------------------------------------

Timing = tuple[float, int, float]  # time to first token (s), tokens, total (s)


def _triton_inputs(model: str, prompt: str, max_tokens: int) -> list[InferInput]:
    if CHAT_MODELS[model] == "chat":
        first = InferInput("MESSAGES", [1], "BYTES")
        messages = [{"role": "user", "content": prompt}]
        first.set_data_from_numpy(np.array([json.dumps(messages).encode()], dtype=object))
    else:
        first = InferInput("PROMPT", [1], "BYTES")
        first.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    limit = InferInput("MAX_TOKENS", [1], "INT32")
    limit.set_data_from_numpy(np.array([max_tokens], dtype=np.int32))
    return [first, limit]


async def direct_stream(
    client: triton_aio.InferenceServerClient, model: str, prompt: str, max_tokens: int
) -> Timing:
    """One Triton stream per generation, read to its natural end (never cancelled late)."""

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": model, "inputs": _triton_inputs(model, prompt, max_tokens)}

    start = time.perf_counter()
    first, tokens = 0.0, 0
    async for result, error in client.stream_infer(requests()):
        if error is not None:
            raise RuntimeError(str(error))
        if result.as_numpy("FINISH_REASON") is None:
            tokens += 1
            first = first or time.perf_counter() - start
    return first, tokens, time.perf_counter() - start


class ServiceStream:
    """One long-lived multiplexed Generate stream, as the worker uses it."""

    def __init__(self, stub: Stub, prefix: str) -> None:
        self.requests: asyncio.Queue[pb.GenerateRequest | None] = asyncio.Queue()
        self.call = stub.Generate(self._pending())
        self.replies = aiter(self.call)
        self.prefix = prefix
        self.n = 0

    async def _pending(self) -> AsyncIterator[pb.GenerateRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def start(self, model: str, prompt: str, max_tokens: int) -> str:
        self.n += 1
        rid = f"{self.prefix}-{self.n}"
        params = pb.SamplingParams(max_tokens=max_tokens)
        start = pb.GenerateStart(model=model, prompt=prompt, params=params)
        self.requests.put_nowait(pb.GenerateRequest(request_id=rid, start=start))
        return rid

    async def generate(self, model: str, prompt: str, max_tokens: int) -> Timing:
        started = time.perf_counter()
        rid = self.start(model, prompt, max_tokens)
        first, tokens = 0.0, 0
        async for reply in self.replies:
            assert reply.request_id == rid
            if reply.HasField("error"):
                raise RuntimeError(reply.error.message)
            if not reply.HasField("delta"):
                break
            tokens += 1
            first = first or time.perf_counter() - started
        return first, tokens, time.perf_counter() - started

    async def cancel_at(self, model: str, prompt: str, tokens: int) -> tuple[str, int]:
        """Cancels a long generation at its `tokens`-th delta: (request id, deltas after)."""
        rid = self.start(model, prompt, 400)
        seen = 0
        async for reply in self.replies:
            if not reply.HasField("delta"):
                break
            seen += 1
            if seen == tokens:
                cancel = pb.GenerateRequest(request_id=rid, cancel=pb.GenerateCancel())
                self.requests.put_nowait(cancel)
        return rid, max(seen - tokens, 0)

    async def close(self) -> None:
        self.requests.put_nowait(None)
        async for _ in self.replies:
            pass


async def stream_figures(gen: Callable[[], Awaitable[Timing]], runs: int) -> dict[str, float]:
    firsts, rates = [], []
    for _ in range(runs):
        first, tokens, total = await gen()
        firsts.append(first * 1000)
        if total > first and tokens > 1:
            rates.append((tokens - 1) / (total - first))
    return {
        "ttft_p50_ms": round(pct(firsts, 50), 2),
        "ttft_p90_ms": round(pct(firsts, 90), 2),
        "tokens_per_s": round(statistics.mean(rates), 1) if rates else 0.0,
    }


# --- the run --------------------------------------------------------------------------------


@dataclass
class Targets:
    triton: triton_aio.InferenceServerClient
    service: Stub
    envoy: Stub


async def measure_embeddings(figures: Figures, t: Targets, n: int) -> None:
    paths = {
        "direct": direct_embed(t.triton),
        "service": service_embed(t.service),
        "envoy+service": service_embed(t.envoy),
    }
    for path, call in paths.items():
        await load(4, 50, call)  # warm-up: connections, the Python backend, caches
        for concurrency in (1, 32):
            figures.add(
                bench="embed",
                path=path,
                concurrency=concurrency,
                **await load(concurrency, n, call),
            )
    for path, call in paths.items():
        inferences0, executions0 = await batch_counts(t.triton, EMBED_MODEL)
        await load(16, n, call)
        inferences1, executions1 = await batch_counts(t.triton, EMBED_MODEL)
        batch = (inferences1 - inferences0) / max(executions1 - executions0, 1)
        figures.add(bench="embed-batching", path=path, avg_triton_batch=round(batch, 2))


async def measure_stream(figures: Figures, t: Targets, model: str, runs: int) -> None:
    prompt, max_tokens = (
        "Name three colours of the rainbow.",
        64 if model == "test-streamer" else 32,
    )

    async def direct() -> Timing:
        return await direct_stream(t.triton, model, prompt, max_tokens)

    figures.add(bench="stream", model=model, path="direct", **await stream_figures(direct, runs))
    for path, stub in (("service", t.service), ("envoy+service", t.envoy)):
        stream = ServiceStream(stub, f"{model}-{path}")
        through = functools.partial(stream.generate, model, prompt, max_tokens)
        figures.add(bench="stream", model=model, path=path, **await stream_figures(through, runs))
        await stream.close()


async def measure_cancel(figures: Figures, t: Targets, triton_log: Callable[[], str]) -> None:
    """Cancel at the 5th token: what the client still got, and what the model still made
    (the model logs how many tokens it had produced when it saw the cancel)."""
    model, at = "smollm2-135m-instruct", 5
    stream = ServiceStream(t.envoy, "cancel")
    runs = [await stream.cancel_at(model, "Tell me a long story.", at) for _ in range(5)]
    await stream.close()
    await asyncio.sleep(1)  # the model's log line follows its last response
    made = []
    for rid, _ in runs:
        found = re.search(rf"request '{re.escape(rid)}' cancelled after (\d+) tokens", triton_log())
        if found:
            made.append(int(found.group(1)) - at)
    figures.add(
        bench="cancel",
        model=model,
        path="envoy+service",
        client_tokens_after_cancel_max=max(after for _, after in runs),
        model_tokens_after_cancel_max=max(made) if made else "not logged",
    )


async def run(quick: bool) -> list[dict[str, Any]]:
    figures = Figures([])
    ports = free_block()
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        stack = background.start(Path(tmp), ports)
        triton = triton_aio.InferenceServerClient(f"127.0.0.1:{ports.triton_grpc}")
        service = grpc.aio.insecure_channel(f"127.0.0.1:{ports.inference}")
        envoy = grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}")
        try:
            t = Targets(
                triton,
                inference_pb2_grpc.InferenceServiceStub(service),
                inference_pb2_grpc.InferenceServiceStub(envoy),
            )
            await measure_embeddings(figures, t, 200 if quick else 1000)
            for model in CHAT_MODELS:
                await measure_stream(figures, t, model, 20 if quick else 50)
            await measure_cancel(figures, t, lambda: stack.log("triton"))
        finally:
            await triton.close()
            await service.close(None)
            await envoy.close(None)
            stack.stop()
    return figures.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    report = report_markdown(asyncio.run(run(args.quick)))
    print(report)
    if args.write:
        page = args.write.read_text() if args.write.exists() else ""
        args.write.write_text(with_head(page, report))


if __name__ == "__main__":
    main()
