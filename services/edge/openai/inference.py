"""The edge's one gRPC channel to the inference service, and the calls it makes on it.

Generate is a bidirectional stream multiplexed by request id. `GenerateStream` owns one
such call: starts and cancels go out through a queue the call drains, and a reader task
moves every response into another, so an owner that stops waiting (a client left) never
cancels a read, which in grpc.aio would cut the whole call before the cancels reach the
model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Final

import grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common.callmetadata import Metadata
from switchboard.common.errors import SwitchboardError

from ..errors import upstream_error

UNARY_TIMEOUT_SECONDS: Final = 60.0
# After the cancels, how long the model may take to confirm before the call is cut.
CLOSE_GRACE_SECONDS: Final = 2.0
SERVICE_NAME: Final = "the inference service"


class Inference:
    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    def generate(self, metadata: Metadata) -> GenerateStream:
        """Opens a Generate stream; it must run inside the event loop that will read it."""
        return GenerateStream(self._stub, metadata)

    async def embed(self, request: pb.EmbedRequest, metadata: Metadata) -> pb.EmbedResponse:
        try:
            return await self._stub.Embed(request, metadata=metadata, timeout=UNARY_TIMEOUT_SECONDS)
        except grpc.RpcError as exc:
            raise upstream_error(exc, SERVICE_NAME) from exc

    async def list_models(self, metadata: Metadata) -> pb.ListModelsResponse:
        try:
            return await self._stub.ListModels(
                pb.ListModelsRequest(), metadata=metadata, timeout=UNARY_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise upstream_error(exc, SERVICE_NAME) from exc

    async def close(self) -> None:
        await self._channel.close(None)


class GenerateStream:
    """One Generate call. Not for concurrent readers: one owner calls `next`."""

    def __init__(
        self, stub: inference_pb2_grpc.InferenceServiceAsyncStub, metadata: Metadata
    ) -> None:
        self._requests: asyncio.Queue[pb.GenerateRequest | None] = asyncio.Queue()
        self._responses: asyncio.Queue[pb.GenerateResponse | SwitchboardError | None] = (
            asyncio.Queue()
        )
        # No deadline: the inference service bounds each generation with its own deadlines.
        self._call = stub.Generate(self._outgoing(), metadata=metadata)
        # Once over: the failure that ended the stream, or None for a clean end.
        self._ended: SwitchboardError | None = None
        self.over = False
        self._reader = asyncio.create_task(self._read())

    def start(self, request_id: str, start: pb.GenerateStart) -> None:
        self._requests.put_nowait(pb.GenerateRequest(request_id=request_id, start=start))

    def cancel(self, request_id: str) -> None:
        cancel = pb.GenerateCancel()
        self._requests.put_nowait(pb.GenerateRequest(request_id=request_id, cancel=cancel))

    async def next(self) -> pb.GenerateResponse | None:
        """The next response of any generation; None once the stream has ended.

        Raises the stream's failure (our error, reason kept) instead, every time."""
        if not self.over:
            item = await self._responses.get()
            if isinstance(item, pb.GenerateResponse):
                return item
            self.over, self._ended = True, item
        if self._ended is not None:
            raise self._ended
        return None

    async def close(self, open_ids: Iterable[str] = ()) -> None:
        """Cancels the generations still open, half-closes, lets the service confirm for a
        moment, then cuts the call. The model stops either way; the cancels make it say so."""
        for request_id in open_ids:
            self.cancel(request_id)
        self._requests.put_nowait(None)
        try:
            await asyncio.wait({self._reader}, timeout=CLOSE_GRACE_SECONDS)
        finally:
            self._call.cancel()
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _outgoing(self) -> AsyncIterator[pb.GenerateRequest]:
        while (request := await self._requests.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            while isinstance(item := await self._call.read(), pb.GenerateResponse):
                self._responses.put_nowait(item)
            self._responses.put_nowait(None)
        except grpc.RpcError as exc:
            self._responses.put_nowait(upstream_error(exc, SERVICE_NAME))
