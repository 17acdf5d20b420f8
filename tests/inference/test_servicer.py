"""ListModels, Embed, ExtractText and log fields, through the real service and Triton."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from PIL import Image, ImageDraw, ImageFont
from prometheus_client import REGISTRY

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common import telemetry
from switchboard.inference.models import EMBED, TASKS, Catalog, Model
from switchboard.inference.servicer import task_value

from ..stack import free_ports
from .support import Service, TritonProcess, reason_of, running_service, status_of
from .test_embedding import echo_vector

EVERY_MODEL = {
    "smollm2-135m-instruct",
    "test-streamer",
    "test-fail",
    "test-hang",
    "all-minilm-l6-v2",
    "test-echo-embed",
    "ppocr-v4",
}


def _specs(tensors: Any) -> list[tuple[str, str, list[int]]]:
    return [(t.name, t.datatype, list(t.shape)) for t in tensors]


@pytest.mark.asyncio
async def test_list_models_reports_aliases_readiness_and_tensors(service: Service) -> None:
    response = await service.stub.ListModels(pb.ListModelsRequest(), timeout=10)

    models = {m.name: m for m in response.models}
    assert set(models) == EVERY_MODEL
    assert all(m.ready for m in models.values())
    streamer = models["test-streamer"]
    assert streamer.task == "generate" and list(streamer.aliases) == []
    assert streamer.task_value == pb.MODEL_TASK_GENERATE
    assert _specs(streamer.inputs) == [
        ("PROMPT", "BYTES", [1]),
        ("MAX_TOKENS", "INT32", [1]),
        ("TOKENS_PER_SECOND", "FP32", [1]),
    ]
    assert "FINISH_REASON" in [t.name for t in streamer.outputs]
    chat = models["smollm2-135m-instruct"]
    assert list(chat.aliases) == ["default-chat"]
    assert chat.inputs[0].name == "MESSAGES"
    embed = models["all-minilm-l6-v2"]
    assert (embed.task, list(embed.aliases)) == ("embed", ["default-embed"])
    assert _specs(embed.inputs) == [("TEXT", "BYTES", [-1, 1])]  # -1: the batch dimension
    assert _specs(embed.outputs) == [("EMBEDDING", "FP32", [-1, 384])]
    ocr = models["ppocr-v4"]
    assert (ocr.task, list(ocr.aliases)) == ("ocr", ["default-ocr"])
    assert (embed.task_value, ocr.task_value) == (pb.MODEL_TASK_EMBED, pb.MODEL_TASK_OCR)
    assert [t.name for t in ocr.outputs] == ["TEXT", "LINES"]
    assert list(models["test-fail"].aliases) == ["test-flaky-chat"]


def test_every_catalog_task_has_its_enum_value() -> None:
    values = {task: task_value(task) for task in TASKS}
    assert pb.MODEL_TASK_UNSPECIFIED not in values.values()
    names = {pb.ModelTask.Name(v).removeprefix("MODEL_TASK_").lower() for v in values.values()}
    assert names == set(TASKS)


@pytest.mark.asyncio
async def test_the_catalog_agrees_with_triton_on_batching(
    service: Service, triton_server: TritonProcess
) -> None:
    """`Model.max_batch_size` decides the shapes sent; it must be Triton's own."""
    client = triton_aio.InferenceServerClient(triton_server.grpc_address)
    try:
        for model in service.router.catalog:
            config = await client.get_model_config(model.triton_name, as_json=True)
            assert model.max_batch_size == config["config"].get("max_batch_size", 0), model.name
    finally:
        await client.close()


@pytest.mark.asyncio
async def test_list_models_without_triton_lists_them_not_ready() -> None:
    (dead_port,) = free_ports(1)
    async with running_service(f"127.0.0.1:{dead_port}", wait_serving=False) as service:
        response = await service.stub.ListModels(pb.ListModelsRequest(), timeout=10)

    assert {m.name for m in response.models} == EVERY_MODEL
    assert [(m.ready, len(m.inputs)) for m in response.models] == [(False, 0)] * len(EVERY_MODEL)


async def _error(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request, timeout=20)
    return raised.value.code(), reason_of(status_of(raised.value))


@pytest.mark.asyncio
async def test_embed_keeps_the_order_of_many_texts(service: Service) -> None:
    texts = [f"{i}: " + "abcdefgh"[: i % 8] * (i % 5) for i in range(200)]

    response = await service.stub.Embed(
        pb.EmbedRequest(model="test-echo-embed", texts=texts), timeout=20
    )

    assert response.model == "test-echo-embed"
    got = np.array([list(e.values) for e in response.embeddings])
    np.testing.assert_allclose(got, [echo_vector(t) for t in texts], rtol=1e-6)


@pytest.mark.asyncio
async def test_minilm_embeds_to_unit_vectors_that_know_what_is_similar(service: Service) -> None:
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly tax filing."]

    response = await service.stub.Embed(
        pb.EmbedRequest(model="default-embed", texts=texts), timeout=20
    )

    assert response.model == "all-minilm-l6-v2"
    vectors = np.array([list(e.values) for e in response.embeddings])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cat, kitten, tax = vectors
    assert float(cat @ kitten) > float(cat @ tax) + 0.2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (pb.EmbedRequest(model="test-echo-embed"), "INVALID_ARGUMENT", "VALIDATION_FAILED"),
        (
            pb.EmbedRequest(model="test-echo-embed", texts=["x"] * 257),
            "INVALID_ARGUMENT",
            "VALIDATION_FAILED",
        ),
        (pb.EmbedRequest(texts=["x"]), "INVALID_ARGUMENT", "VALIDATION_FAILED"),
        (pb.EmbedRequest(model="no-such-model", texts=["x"]), "NOT_FOUND", "MODEL_NOT_FOUND"),
        (
            pb.EmbedRequest(model="default-chat", texts=["x"]),
            "INVALID_ARGUMENT",
            "MODEL_TASK_MISMATCH",
        ),
    ],
    ids=["no-texts", "too-many-texts", "no-model", "unknown-model", "chat-model"],
)
async def test_embed_refusals(
    service: Service, request_: pb.EmbedRequest, code: str, reason: str
) -> None:
    assert await _error(service.stub.Embed, request_) == (grpc.StatusCode[code], reason)


@pytest.mark.asyncio
async def test_embed_falls_back_past_a_model_triton_does_not_serve(
    triton_server: TritonProcess,
) -> None:
    catalog = Catalog(
        [
            Model("undeployed", "not-in-triton", EMBED, max_batch_size=32),
            Model("test-echo-embed", "test-echo-embed", EMBED, max_batch_size=32),
        ],
        {"embed-with-fallback": ["undeployed", "test-echo-embed"]},
    )
    labels = {"route": "embed-with-fallback", "model": "undeployed", "reason": "MODEL_NOT_FOUND"}
    before = REGISTRY.get_sample_value("switchboard_inference_fallbacks_total", labels) or 0
    async with running_service(
        triton_server.grpc_address, catalog=catalog, canary_routes="test-echo-embed"
    ) as service:
        response = await service.stub.Embed(
            pb.EmbedRequest(model="embed-with-fallback", texts=["abc"]), timeout=20
        )

    assert response.model == "test-echo-embed"
    assert list(response.embeddings[0].values) == pytest.approx(echo_vector("abc"))
    after = REGISTRY.get_sample_value("switchboard_inference_fallbacks_total", labels)
    assert after == before + 1


@pytest.mark.asyncio
async def test_embed_retries_an_unreachable_triton_then_says_unavailable() -> None:
    (dead_port,) = free_ports(1)
    labels = {"model": "test-echo-embed", "reason": "BACKEND_UNAVAILABLE"}
    before = REGISTRY.get_sample_value("switchboard_inference_retries_total", labels) or 0
    async with running_service(f"127.0.0.1:{dead_port}", wait_serving=False) as service:
        error = await _error(
            service.stub.Embed, pb.EmbedRequest(model="test-echo-embed", texts=["x"])
        )

    assert error == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
    assert REGISTRY.get_sample_value("switchboard_inference_retries_total", labels) == before + 2


def _rendered(text: str) -> bytes:
    image = Image.new("RGB", (900, 120), "white")
    ImageDraw.Draw(image).text((30, 30), text, fill="black", font=ImageFont.load_default(size=40))
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return encoded.getvalue()


@pytest.mark.asyncio
async def test_extract_text_reads_a_rendered_line(service: Service) -> None:
    request = pb.ExtractTextRequest(model="default-ocr", image=_rendered("Switchboard reads 42"))

    response = await service.stub.ExtractText(request, timeout=60)

    assert response.model == "ppocr-v4"
    assert response.text.replace(" ", "").lower() == "switchboardreads42"
    (line,) = response.lines
    assert line.confidence > 0.8
    assert len(line.box) == 8
    xs, ys = line.box[0::2], line.box[1::2]
    assert 0 <= min(xs) < max(xs) <= 900 and 0 <= min(ys) < max(ys) <= 120


@pytest.mark.asyncio
async def test_extract_text_refuses_what_is_not_an_image(service: Service) -> None:
    request = pb.ExtractTextRequest(model="ppocr-v4", image=b"not an image")

    error = await _error(service.stub.ExtractText, request)

    assert error == (grpc.StatusCode.INVALID_ARGUMENT, "BACKEND_REJECTED_INPUT")
    # The input was at fault, not the backend: its breaker saw nothing.
    assert service.router.backend("ppocr-v4").breaker.failures() == (0, 0)


@pytest.mark.asyncio
async def test_extract_text_on_an_embedding_model_is_task_mismatch(service: Service) -> None:
    request = pb.ExtractTextRequest(model="default-embed", image=b"x")

    assert await _error(service.stub.ExtractText, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MODEL_TASK_MISMATCH",
    )


@pytest.mark.asyncio
async def test_generation_logs_carry_the_job_and_session_ids(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.inference")
    # Formatting at emit time, in the generation's task, is what reads the job id.
    caplog.handler.setFormatter(telemetry.JsonFormatter("inference"))
    stream = service.stream(metadata=(("x-job-id", "job-42"), ("x-session-id", "sess-7")))
    stream.start("logged", "a b")
    await stream.until_end("logged")
    stream.half_close()
    assert await stream.call.code() == grpc.StatusCode.OK

    entries = [json.loads(line) for line in caplog.text.splitlines() if line.startswith("{")]
    (ended,) = [e for e in entries if e["msg"] == "generation ended"]
    assert (ended["job_id"], ended["session_id"]) == ("job-42", "sess-7")
    assert (ended["request_id"], ended["outcome"], ended["tokens"]) == ("logged", "stop", 4)
    (opened,) = [e for e in entries if e["msg"] == "generate stream opened"]
    assert opened["session_id"] == "sess-7"
