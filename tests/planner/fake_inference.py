"""A stand-in for the inference service, for the planner's tests only.

It speaks the real InferenceService.Generate protocol over a real gRPC server, but its
"models" are scripted; the end-to-end tests cover the real inference service and Triton.
  echo   streams the prompt's words, then done (STOP)
  slow   streams a word every 50 ms for up to a minute, honouring cancel (done CANCELLED)
  fail   answers an error (reason FAKE_MODEL_FAILED, FAILED_PRECONDITION: not retryable)
  silent sends nothing until cancelled (done CANCELLED)
  flaky  breaks the stream (UNAVAILABLE) on a request's first attempt, then acts as echo
  echo-embed   (Embed) each text becomes [its length, its word count]
  flaky-embed  (Embed) answers UNAVAILABLE to a request's first call, then acts as echo-embed
It records what it saw: every start with the call's metadata, every cancel, and the model of
every Embed call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common.errors import FailedPrecondition, Unavailable, to_rpc_status

SLOW_DELAY_S = 0.05
MODELS = ("echo", "slow", "silent", "fail", "flaky")
_END = object()


@dataclass
class Start:
    request_id: str
    model: str
    prompt: str
    metadata: dict[str, str]


@dataclass
class FakeInference(inference_pb2_grpc.InferenceServiceServicer):
    starts: list[Start] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    flaky_seen: set[str] = field(default_factory=set)
    embeds: list[str] = field(default_factory=list)

    async def Generate(
        self, request_iterator: AsyncIterator[pb.GenerateRequest], context: Any
    ) -> AsyncIterator[pb.GenerateResponse]:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        out: asyncio.Queue[object] = asyncio.Queue()
        reader = asyncio.create_task(self._read(request_iterator, metadata, out, context))
        try:
            while (item := await out.get()) is not _END:
                if isinstance(item, grpc.Status):
                    await context.abort_with_status(item)
                assert isinstance(item, pb.GenerateResponse)
                yield item
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Any
    ) -> pb.ListModelsResponse:
        models = [pb.ModelInfo(name=n, task="generate", ready=True) for n in MODELS]
        return pb.ListModelsResponse(models=models)

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        self.embeds.append(request.model)
        if request.model == "flaky-embed":
            texts = "\n".join(request.texts)
            if texts not in self.flaky_seen:
                self.flaky_seen.add(texts)
                status = to_rpc_status(Unavailable("the backend is restarting").to_status())
                await context.abort_with_status(status)
        elif request.model != "echo-embed":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no embedding model {request.model}")
        vectors = [pb.Embedding(values=[len(t), len(t.split())]) for t in request.texts]
        return pb.EmbedResponse(embeddings=vectors, model=request.model)

    async def ExtractText(
        self, request: pb.ExtractTextRequest, context: Any
    ) -> pb.ExtractTextResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake does not read images")
        raise AssertionError("abort raises")

    async def _read(
        self,
        requests: AsyncIterator[pb.GenerateRequest],
        metadata: dict[str, str],
        out: asyncio.Queue[object],
        context: Any,
    ) -> None:
        running: dict[str, asyncio.Task[None]] = {}
        try:
            async for request in requests:
                if request.HasField("start"):
                    start = request.start
                    self.starts.append(
                        Start(request.request_id, start.model, start.prompt, metadata)
                    )
                    task = asyncio.create_task(self._generate(request.request_id, start, out))
                    running[request.request_id] = task
                elif request.HasField("cancel"):
                    self.cancels.append(request.request_id)
                    if victim := running.get(request.request_id):
                        victim.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            await out.put(_END)
        finally:
            for task in running.values():
                task.cancel()

    async def _generate(
        self, request_id: str, start: pb.GenerateStart, out: asyncio.Queue[object]
    ) -> None:
        if start.model == "fail":
            error = FailedPrecondition("the fake model failed", reason="FAKE_MODEL_FAILED")
            await out.put(pb.GenerateResponse(request_id=request_id, error=error.to_status()))
        elif start.model == "flaky" and request_id not in self.flaky_seen:
            self.flaky_seen.add(request_id)
            await out.put(_delta(request_id, 0, start.prompt.split()[0]))
            dropped = Unavailable("the fake stream broke", reason="FAKE_DROPPED")
            await out.put(to_rpc_status(dropped.to_status()))
        else:
            await _stream(request_id, start, out)


def _delta(request_id: str, index: int, word: str) -> pb.GenerateResponse:
    text = word if index == 0 else " " + word
    return pb.GenerateResponse(request_id=request_id, delta=pb.TokenDelta(text=text, index=index))


async def _stream(request_id: str, start: pb.GenerateStart, out: asyncio.Queue[object]) -> None:
    slow = start.model == "slow"
    words = [f"w{i}" for i in range(int(60 / SLOW_DELAY_S))] if slow else start.prompt.split()
    try:
        if start.model == "silent":
            await asyncio.sleep(60)
        for index, word in enumerate(words):
            if slow:
                await asyncio.sleep(SLOW_DELAY_S)
            await out.put(_delta(request_id, index, word))
    except asyncio.CancelledError:
        done = pb.GenerateDone(finish_reason=pb.FINISH_REASON_CANCELLED, model=start.model)
        await out.put(pb.GenerateResponse(request_id=request_id, done=done))
        return
    usage = pb.Usage(prompt_tokens=len(start.prompt.split()), completion_tokens=len(words))
    done = pb.GenerateDone(finish_reason=pb.FINISH_REASON_STOP, usage=usage, model=start.model)
    await out.put(pb.GenerateResponse(request_id=request_id, done=done))
