"""InferenceService: multiplexed Generate, ListModels from Triton, Embed not yet."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common import telemetry
from switchboard.common.errors import SwitchboardError
from switchboard.common.validation import validate

from .errors import Unimplemented
from .generation import Limits
from .models import Catalog, Model
from .session import Admission, Session
from .triton import TritonClient

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(
        self, catalog: Catalog, triton: TritonClient, admission: Admission, limits: Limits
    ) -> None:
        self._catalog = catalog
        self._triton = triton
        self._admission = admission
        self._limits = limits

    async def Generate(
        self, request_iterator: AsyncIterator[pb.GenerateRequest], context: Context
    ) -> AsyncIterator[pb.GenerateResponse]:
        _bind_job(context)
        session = Session(self._catalog, self._triton, self._admission, self._limits)
        async for response in session.responses(request_iterator):
            yield response

    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        _bind_job(context)
        validate(request)
        # The catalog has no embedding model yet; say so instead of pretending.
        raise Unimplemented("Embed is not implemented yet: no embedding model is deployed")

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        validate(request)
        infos = await asyncio.gather(*(self._describe(model) for model in self._catalog))
        return pb.ListModelsResponse(models=infos)

    async def _describe(self, model: Model) -> pb.ModelInfo:
        info = pb.ModelInfo(name=model.name, task=model.task)
        try:
            info.ready = await self._triton.model_ready(model.triton_name)
            metadata = await self._triton.model_metadata(model.triton_name)
        except SwitchboardError as exc:
            # One model Triton cannot describe must not hide the others: list it not ready.
            log.warning(
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


def _bind_job(context: Context) -> None:
    """Logs of this call (and the tasks it starts) carry the caller's job id."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-job-id" and isinstance(value, str):
            telemetry.job_id_var.set(value)
