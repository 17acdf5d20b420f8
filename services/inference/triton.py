"""The Triton adapter: the only code that talks to Triton.

One gRPC channel per process, with tritonclient's generated KServe-v2 stub and its tensor
helpers. Each generation gets its own `ModelStreamInfer` stream because Triton cancels only
whole streams: cancelling the stream is how a generation's backend is stopped.

We use the stub rather than `tritonclient.grpc.aio.InferenceServerClient.stream_infer`
because that wrapper cannot set `triton_enable_empty_final_response` (it rejects every
`triton_` parameter), and without it a decoupled model that ends with a bare final flag
would leave the stream open forever. Triton's errors are translated here, by gRPC code
for failed calls and as `BackendError` for errors a model reports in-band.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import InferResult, service_pb2, service_pb2_grpc
from tritonclient.utils import serialize_byte_tensor

from switchboard.common import telemetry
from switchboard.common.errors import SwitchboardError

from .errors import BackendError, BackendTimeout, BackendUnavailable, ModelNotFound

FINAL_FLAG = "triton_final_response"


@dataclass(frozen=True)
class GenerateCall:
    model: str
    prompt: str
    request_id: str
    max_tokens: int | None = None
    tokens_per_second: float = 0.0


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


class TritonClient:
    """Generation streams, readiness and metadata over one channel to Triton."""

    def __init__(self, address: str, *, call_timeout_s: float = 5.0) -> None:
        self.address = address
        self._call_timeout_s = call_timeout_s
        self._channel = grpc.aio.insecure_channel(address)
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

    async def generate(self, call: GenerateCall) -> AsyncGenerator[Token | Finish, None]:
        """Tokens as the model streams them, then exactly one Finish; or raises.

        Leaving the iteration early (cancel, timeout, `aclose()`) cancels the Triton stream,
        which is what stops the backend. Otherwise the stream is read to its end before the
        outcome is reported: Triton 2.51 leaks a cancelled stream (and keeps its model from
        ever unloading) when the cancel lands just as the stream completes.
        """
        stream = self._stub.ModelStreamInfer(
            _single(_infer_request(call)), metadata=telemetry.trace_metadata()
        )
        meta = {"model": call.model}
        error, final, completion = "", False, 0
        finish: Finish | None = None
        try:
            with _translated(call.model):
                async for response in stream:
                    if response.error_message:
                        if _final_flag(response.infer_response) is False:
                            raise BackendError(response.error_message, metadata=meta)
                        error = response.error_message  # the stream ends right after it
                        continue
                    result = InferResult(response.infer_response)
                    if text := _text(result, "TEXT"):
                        completion += 1
                        yield Token(text)
                    finish = _finish(result) or finish
                    final = final or bool(_final_flag(response.infer_response))
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


def _infer_request(call: GenerateCall) -> Any:
    request = service_pb2.ModelInferRequest(model_name=call.model, id=call.request_id)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    _add_input(request, "PROMPT", "BYTES", np.array([call.prompt.encode()], dtype=np.object_))
    if call.max_tokens is not None:
        _add_input(request, "MAX_TOKENS", "INT32", np.array([call.max_tokens], dtype=np.int32))
    if call.tokens_per_second > 0:
        rate = np.array([call.tokens_per_second], dtype=np.float32)
        _add_input(request, "TOKENS_PER_SECOND", "FP32", rate)
    return request


def _add_input(request: Any, name: str, datatype: str, value: np.ndarray[Any, Any]) -> None:
    request.inputs.add(name=name, datatype=datatype, shape=list(value.shape))
    raw = serialize_byte_tensor(value).item() if datatype == "BYTES" else value.tobytes()
    request.raw_input_contents.append(raw)


def _final_flag(response: Any) -> bool | None:
    """Triton's flag on a decoupled model's responses; None where it sends none."""
    if FINAL_FLAG not in response.parameters:
        return None
    return bool(response.parameters[FINAL_FLAG].bool_param)


def _text(result: Any, name: str) -> str | None:
    value = result.as_numpy(name)
    if value is None or value.size == 0:
        return None
    return bytes(value.reshape(-1)[0]).decode("utf-8", errors="replace")


def _int(result: Any, name: str) -> int:
    value = result.as_numpy(name)
    return 0 if value is None or value.size == 0 else int(value.reshape(-1)[0])


def _finish(result: Any) -> Finish | None:
    reason = _text(result, "FINISH_REASON")
    if reason is None:
        return None
    return Finish(reason, _int(result, "PROMPT_TOKENS"), _int(result, "COMPLETION_TOKENS"))


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
    return BackendError(details, metadata=metadata)
