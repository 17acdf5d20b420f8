"""InferenceService: multiplexed Generate, Embed, ExtractText and ListModels, over the router."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common import telemetry
from switchboard.common.errors import SwitchboardError
from switchboard.common.hashkeys import JOB_ID_HEADER, SESSION_ID_HEADER
from switchboard.common.validation import validate

from . import embedding, ocr
from .generation import Limits
from .models import EMBED, OCR, Model
from .routing import Router
from .session import Session
from .triton import TritonClient
from .unary import UnaryCaller

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class Options:
    generation: Limits
    embed_timeout_s: float
    extract_text_timeout_s: float
    embed_chunk_size: int


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(
        self, router: Router, triton: TritonClient, unary: UnaryCaller, options: Options
    ) -> None:
        self._router = router
        self._triton = triton
        self._unary = unary
        self._options = options

    async def Generate(
        self, request_iterator: AsyncIterator[pb.GenerateRequest], context: Context
    ) -> AsyncIterator[pb.GenerateResponse]:
        fields = _bind(context)
        log.info("generate stream opened", extra={"fields": fields})
        session = Session(self._router, self._triton, self._options.generation, fields)
        async for response in session.responses(request_iterator):
            yield response

    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        fields = _bind(context)
        validate(request)
        route = self._router.resolve(request.model, EMBED)
        texts, chunk = list(request.texts), self._options.embed_chunk_size

        async def work(model: Model, timeout_s: float) -> embedding.Vectors:
            return await embedding.embed(self._triton, model, texts, timeout_s, chunk)

        timeout_s = _timeout(self._options.embed_timeout_s, context)
        vectors, model = await self._unary.call(route, work, timeout_s)
        log.debug("embedded", extra={"fields": {**fields, "model": model.name, "n": len(texts)}})
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=row) for row in vectors.tolist()], model=model.name
        )

    async def ExtractText(
        self, request: pb.ExtractTextRequest, context: Context
    ) -> pb.ExtractTextResponse:
        fields = _bind(context)
        validate(request)
        route = self._router.resolve(request.model, OCR)

        async def work(model: Model, timeout_s: float) -> pb.ExtractTextResponse:
            return await ocr.extract_text(self._triton, model, request.image, timeout_s)

        timeout_s = _timeout(self._options.extract_text_timeout_s, context)
        response, model = await self._unary.call(route, work, timeout_s)
        log.debug("text extracted", extra={"fields": {**fields, "model": model.name}})
        return response

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        validate(request)
        infos = await asyncio.gather(*(self._describe(model) for model in self._router.catalog))
        return pb.ListModelsResponse(models=infos)

    async def _describe(self, model: Model) -> pb.ModelInfo:
        aliases = self._router.catalog.aliases_of(model)
        info = pb.ModelInfo(
            name=model.name, task=model.task, task_value=task_value(model.task), aliases=aliases
        )
        try:
            info.ready = await self._triton.model_ready(model.triton_name)
            metadata = await self._triton.model_metadata(model.triton_name)
        except SwitchboardError as exc:
            # One model Triton cannot describe must not hide the others: list it not ready.
            log.info(
                "cannot describe model",
                extra={"fields": {"model": model.name, "reason": exc.reason}},
            )
            info.ready = False
            return info
        for specs, tensors in ((info.inputs, metadata.inputs), (info.outputs, metadata.outputs)):
            specs.extend(
                pb.TensorSpec(name=t.name, datatype=t.datatype, shape=t.shape) for t in tensors
            )
        return info


def task_value(task: str) -> pb.ModelTask.ValueType:
    """The catalog's task name as the contract's enum (every name in `models.TASKS` has one)."""
    return pb.ModelTask.Value(f"MODEL_TASK_{task.upper()}")


def _bind(context: Context) -> dict[str, str]:
    """Logs of this call (and the tasks it starts) carry the caller's job id; the session id
    (Envoy hashes on it to keep a session on one replica) comes back as a log field."""
    fields = {}
    for key, value in context.invocation_metadata() or ():
        if key == JOB_ID_HEADER and isinstance(value, str):
            telemetry.job_id_var.set(value)
        elif key == SESSION_ID_HEADER and isinstance(value, str):
            fields["session_id"] = value
    return fields


def _timeout(configured_s: float, context: Context) -> float:
    """The call's deadline: ours, or the client's when that is sooner."""
    remaining = context.time_remaining()
    return configured_s if remaining is None else min(configured_s, remaining)
