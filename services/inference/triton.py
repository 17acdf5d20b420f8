"""The Triton adapter: the only code that talks to Triton.

One gRPC channel per process, with tritonclient's generated KServe-v2 stub and its tensor
helpers. Each generation gets its own `ModelStreamInfer` stream because Triton cancels only
whole streams: cancelling the stream is how a generation's backend is stopped. Embeddings
and OCR are unary `ModelInfer` calls with the caller's deadline.

We use the stub rather than `tritonclient.grpc.aio.InferenceServerClient.stream_infer`
because that wrapper cannot set `triton_enable_empty_final_response` (it rejects every
`triton_` parameter), and without it a decoupled model that ends with a bare final flag
would leave the stream open forever. Triton's errors are translated here: failed calls by
their gRPC code, and errors a model reports in-band in a stream (which carry no code) as
`BackendError`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc

from switchboard.common import telemetry
from switchboard.common.errors import SwitchboardError

from . import tensors
from .errors import (
    BackendError,
    BackendRejectedInput,
    BackendTimeout,
    BackendUnavailable,
    ModelNotFound,
    QueueFull,
    retry_info,
)

TRITON_RETRY_AFTER_S = 1.0
RECONNECT_BACKOFF_MS = 2000


@dataclass(frozen=True)
class GenerateCall:
    model: str
    prompt: str
    request_id: str
    max_tokens: int | None = None
    tokens_per_second: float = 0.0
    # A chat model's conversation as JSON [{role, content}], sent as MESSAGES, not PROMPT.
    messages: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Finish:
    reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True)
class OcrOutput:
    text: str
    lines_json: str


class TritonClient:
    """Generation streams, unary inference, readiness and metadata over one channel."""

    def __init__(self, address: str, *, call_timeout_s: float = 5.0) -> None:
        self.address = address
        self._call_timeout_s = call_timeout_s
        # Triton is local and cheap to dial: after an outage, reconnect within seconds
        # rather than gRPC's default backoff of up to two minutes.
        self._channel = grpc.aio.insecure_channel(
            address, options=[("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS)]
        )
        self._stub: Any = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def model_ready(self, model: str) -> bool:
        request = service_pb2.ModelReadyRequest(name=model)
        with _translated(model):
            response = await self._stub.ModelReady(request, timeout=self._call_timeout_s)
        return bool(response.ready)

    async def model_metadata(self, model: str) -> ModelMetadata:
        request = service_pb2.ModelMetadataRequest(name=model)
        with _translated(model):
            response = await self._stub.ModelMetadata(request, timeout=self._call_timeout_s)
        return ModelMetadata(_tensors(response.inputs), _tensors(response.outputs))

    async def repository(self) -> frozenset[str]:
        """The names of every model in Triton's repository, loaded or not."""
        request = service_pb2.RepositoryIndexRequest()
        with _translated(""):
            response = await self._stub.RepositoryIndex(request, timeout=self._call_timeout_s)
        return frozenset(m.name for m in response.models)

    async def embed(
        self, model: str, texts: Sequence[str], *, batched: bool, timeout_s: float
    ) -> np.ndarray[Any, np.dtype[np.float32]]:
        """One request for all the texts: a [n, dim] float32 array, rows in input order."""
        request = service_pb2.ModelInferRequest(model_name=model)
        tensors.add_bytes(request, "TEXT", [t.encode() for t in texts], batched=batched)
        result = await self._infer(model, request, timeout_s)
        values = result.as_numpy("EMBEDDING")
        if values is None or values.size == 0 or values.size % len(texts):
            raise BackendError(f"{model} returned no usable EMBEDDING", metadata={"model": model})
        return np.asarray(values, dtype=np.float32).reshape(len(texts), -1)

    async def extract_text(
        self, model: str, image: bytes, *, batched: bool, timeout_s: float
    ) -> OcrOutput:
        request = service_pb2.ModelInferRequest(model_name=model)
        tensors.add_bytes(request, "IMAGE", [image], batched=batched)
        result = await self._infer(model, request, timeout_s)
        return OcrOutput(tensors.text(result, "TEXT") or "", tensors.text(result, "LINES") or "[]")

    async def _infer(self, model: str, request: Any, timeout_s: float) -> Any:
        metadata = telemetry.trace_metadata()
        with _translated(model):
            response = await self._stub.ModelInfer(request, timeout=timeout_s, metadata=metadata)
        return InferResult(response)

    async def generate(self, call: GenerateCall) -> AsyncGenerator[Token | Finish, None]:
        """Tokens as the model streams them, then exactly one Finish; or raises.

        Leaving the iteration early (cancel, timeout, `aclose()`) cancels the Triton stream,
        which is what stops the backend. Otherwise the stream is read to its end before the
        outcome is reported: Triton 2.51 leaks a cancelled stream (and keeps its model from
        ever unloading) when the cancel lands just as the stream completes.
        """
        stream = self._stub.ModelStreamInfer(
            _single(_generate_request(call)), metadata=telemetry.trace_metadata()
        )
        meta = {"model": call.model}
        error, final, completion = "", False, 0
        finish: Finish | None = None
        try:
            with _translated(call.model):
                async for response in stream:
                    if response.error_message:
                        if tensors.final_flag(response.infer_response) is False:
                            raise BackendError(response.error_message, metadata=meta)
                        error = response.error_message  # the stream ends right after it
                        continue
                    result = InferResult(response.infer_response)
                    if text := tensors.text(result, "TEXT"):
                        completion += 1
                        yield Token(text)
                    finish = _finish(result) or finish
                    final = final or bool(tensors.final_flag(response.infer_response))
            if error:
                raise BackendError(error, metadata=meta)
            if not (final or finish):
                raise BackendError(
                    "Triton ended the stream without a final response", metadata=meta
                )
            yield finish or Finish("stop", 0, completion)
        finally:
            stream.cancel()  # a no-op once the stream has ended


async def _single(request: Any) -> AsyncIterator[Any]:
    # One request, then half-close: Triton still delivers every response of the request
    # and ends the stream after them, so in-band errors without a final flag end it too.
    yield request


def _generate_request(call: GenerateCall) -> Any:
    request = service_pb2.ModelInferRequest(model_name=call.model, id=call.request_id)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    if call.messages is not None:
        tensors.add_bytes(request, "MESSAGES", [call.messages.encode()], batched=False)
    else:
        tensors.add_bytes(request, "PROMPT", [call.prompt.encode()], batched=False)
    if call.max_tokens is not None:
        tensors.add_scalar(request, "MAX_TOKENS", "INT32", call.max_tokens, np.int32)
    if call.tokens_per_second > 0:
        tensors.add_scalar(request, "TOKENS_PER_SECOND", "FP32", call.tokens_per_second, np.float32)
    if call.temperature is not None:
        tensors.add_scalar(request, "TEMPERATURE", "FP32", call.temperature, np.float32)
    if call.top_p is not None:
        tensors.add_scalar(request, "TOP_P", "FP32", call.top_p, np.float32)
    if call.stop:
        tensors.add_bytes(request, "STOP", [json.dumps(list(call.stop)).encode()], batched=False)
    if call.seed is not None:
        tensors.add_scalar(request, "SEED", "INT64", call.seed, np.int64)
    return request


def _finish(result: Any) -> Finish | None:
    reason = tensors.text(result, "FINISH_REASON")
    if reason is None:
        return None
    return Finish(
        reason,
        tensors.integer(result, "PROMPT_TOKENS"),
        tensors.integer(result, "COMPLETION_TOKENS"),
    )


def _tensors(specs: Any) -> tuple[Tensor, ...]:
    return tuple(Tensor(s.name, s.datatype, tuple(int(d) for d in s.shape)) for s in specs)


@contextlib.contextmanager
def _translated(model: str) -> Iterator[None]:
    """Failed calls to Triton become our errors, by status code."""
    try:
        yield
    except grpc.aio.AioRpcError as e:
        raise _from_rpc_error(e, model) from e


def _from_rpc_error(error: grpc.aio.AioRpcError, model: str) -> SwitchboardError:
    code, details = error.code(), error.details() or error.code().name
    metadata = {"model": model, "triton_code": code.name}
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(f"Triton is unavailable: {details}", metadata=metadata)
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(f"Triton does not serve {model!r}: {details}", metadata=metadata)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return BackendTimeout(f"Triton did not answer in time: {details}", metadata=metadata)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BackendRejectedInput(f"{model} rejected the input: {details}", metadata=metadata)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        detail = retry_info(TRITON_RETRY_AFTER_S)
        return QueueFull(f"Triton's queue is full: {details}", metadata=metadata, details=[detail])
    return BackendError(details, metadata=metadata)
