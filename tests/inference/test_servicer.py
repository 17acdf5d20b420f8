"""ListModels, Embed and the job id in logs, through the real service and Triton."""

from __future__ import annotations

import json
import logging

import grpc
import pytest

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common import telemetry

from ..stack import free_ports
from .support import Service, reason_of, running_service, status_of


@pytest.mark.asyncio
async def test_list_models_reports_readiness_and_tensors(service: Service) -> None:
    response = await service.stub.ListModels(pb.ListModelsRequest(), timeout=10)

    models = {m.name: m for m in response.models}
    assert set(models) == {"test-streamer", "test-fail"}
    streamer = models["test-streamer"]
    assert streamer.ready and streamer.task == "generate"
    assert [(t.name, t.datatype, list(t.shape)) for t in streamer.inputs] == [
        ("PROMPT", "BYTES", [1]),
        ("MAX_TOKENS", "INT32", [1]),
        ("TOKENS_PER_SECOND", "FP32", [1]),
    ]
    assert "FINISH_REASON" in [t.name for t in streamer.outputs]
    assert models["test-fail"].ready


@pytest.mark.asyncio
async def test_list_models_without_triton_lists_them_not_ready() -> None:
    (dead_port,) = free_ports(1)
    async with running_service(f"127.0.0.1:{dead_port}", wait_serving=False) as service:
        response = await service.stub.ListModels(pb.ListModelsRequest(), timeout=10)

    assert [(m.name, m.ready, len(m.inputs)) for m in response.models] == [
        ("test-streamer", False, 0),
        ("test-fail", False, 0),
    ]


async def _embed_error(service: Service, request: pb.EmbedRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.stub.Embed(request, timeout=10)
    return raised.value.code(), reason_of(status_of(raised.value))


@pytest.mark.asyncio
async def test_embed_is_not_implemented_yet(service: Service) -> None:
    request = pb.EmbedRequest(model="test-streamer", texts=["hello"])

    assert await _embed_error(service, request) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "NOT_IMPLEMENTED",
    )


@pytest.mark.asyncio
async def test_embed_still_validates(service: Service) -> None:
    request = pb.EmbedRequest(model="test-streamer")  # no texts

    assert await _embed_error(service, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
    )


@pytest.mark.asyncio
async def test_generation_logs_carry_the_job_id(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.inference")
    # Formatting at emit time, in the generation's task, is what reads the job id.
    caplog.handler.setFormatter(telemetry.JsonFormatter("inference"))
    stream = service.stream(metadata=(("x-job-id", "job-42"),))
    stream.start("logged", "a b")
    await stream.until_end("logged")
    stream.half_close()
    assert await stream.call.code() == grpc.StatusCode.OK

    entries = [json.loads(line) for line in caplog.text.splitlines() if line.startswith("{")]
    (ended,) = [e for e in entries if e["msg"] == "generation ended"]
    assert ended["job_id"] == "job-42"
    assert (ended["request_id"], ended["outcome"], ended["tokens"]) == ("logged", "stop", 4)
