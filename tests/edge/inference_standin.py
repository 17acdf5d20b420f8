"""A stand-in inference service for the edge's OpenAI and WebSocket tests.

It is the planner tests' scripted fake (tests/planner/fake_inference.py: echo, slow,
silent, fail, flaky) on a real gRPC server, taught what the edge's interactive routes
need: a conversation (`messages`) is echoed like a prompt, an unknown model is refused as
the real service refuses it (MODEL_NOT_FOUND), ListModels names aliases, and every start
is kept whole. The real inference service and Triton are covered end to end
(tests/e2e/test_openai.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import NotFound, to_rpc_status

from ..planner.fake_inference import MODELS, FakeInference

EMBED_MODEL = "echo-embed"
ALIASES = {"echo": ["default-chat"], EMBED_MODEL: ["default-embed"]}


def model_not_found(name: str) -> NotFound:
    return NotFound(f"unknown model {name!r}", reason="MODEL_NOT_FOUND", metadata={"model": name})


@dataclass
class ChatInference(FakeInference):
    started: list[pb.GenerateStart] = field(default_factory=list)
    started_ids: list[str] = field(default_factory=list)

    async def _generate(
        self, request_id: str, start: pb.GenerateStart, out: asyncio.Queue[object]
    ) -> None:
        self.started.append(start)
        self.started_ids.append(request_id)
        name = next((m for m, names in ALIASES.items() if start.model in names), start.model)
        if name not in MODELS:
            error = model_not_found(start.model).to_status()
            await out.put(pb.GenerateResponse(request_id=request_id, error=error))
            return
        echo = pb.GenerateStart()
        echo.CopyFrom(start)
        echo.model = name
        if not echo.prompt:
            echo.prompt = " ".join(m.content for m in start.messages)
            del echo.messages[:]
        await super()._generate(request_id, echo, out)

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        """`echo-embed` (alias default-embed): each text becomes [its length, its words]."""
        if request.model not in (EMBED_MODEL, *ALIASES[EMBED_MODEL]):
            status = model_not_found(request.model).to_status()
            await context.abort_with_status(to_rpc_status(status))
        vectors = [pb.Embedding(values=[len(t), len(t.split())]) for t in request.texts]
        return pb.EmbedResponse(embeddings=vectors, model=EMBED_MODEL)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Any
    ) -> pb.ListModelsResponse:
        models = [
            pb.ModelInfo(name=n, task="generate", ready=True, aliases=ALIASES.get(n, []))
            for n in MODELS
        ]
        models.append(
            pb.ModelInfo(name=EMBED_MODEL, task="embed", ready=True, aliases=ALIASES[EMBED_MODEL])
        )
        return pb.ListModelsResponse(models=models)
