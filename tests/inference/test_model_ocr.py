"""ppocr-v4 served by the session's real Triton: text rendered here is read back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from ..document_files import png
from .support import output_text

MODEL = "ppocr-v4"
TIMEOUT_S = 60.0
LINES = ["Switchboard reads this line", "The quick brown fox jumps 42 times"]
WIDTH, HEIGHT = 900, 260


async def _ocr(client: aioclient.InferenceServerClient, image: bytes) -> Any:
    tensor = grpcclient.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
    return await asyncio.wait_for(client.infer(MODEL, [tensor]), TIMEOUT_S)


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.mark.asyncio
async def test_reads_rendered_lines_top_to_bottom(client: aioclient.InferenceServerClient) -> None:
    result = await _ocr(client, png(LINES, (WIDTH, HEIGHT)))

    text, lines = output_text(result, "TEXT"), json.loads(output_text(result, "LINES"))
    assert [_normalised(t) for t in text.split("\n")] == [_normalised(t) for t in LINES]
    assert [line["text"] for line in lines] == text.split("\n")
    for line in lines:
        assert 0.8 <= line["confidence"] <= 1.0
        box = line["box"]
        assert len(box) == 8
        assert all(0 <= x <= WIDTH for x in box[0::2])
        assert all(0 <= y <= HEIGHT for y in box[1::2])
    first_bottom = max(lines[0]["box"][1::2])
    second_top = min(lines[1]["box"][1::2])
    assert first_bottom < second_top


@pytest.mark.asyncio
async def test_blank_image_has_no_text(client: aioclient.InferenceServerClient) -> None:
    result = await _ocr(client, png([], size=(240, 120)))

    assert output_text(result, "TEXT") == ""
    assert json.loads(output_text(result, "LINES")) == []


@pytest.mark.asyncio
async def test_undecodable_image_is_invalid_argument(
    client: aioclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        await _ocr(client, b"\x89PNG\r\n\x1a\n but not really an image")

    assert "not a decodable PNG/JPEG image" in str(raised.value.message())
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
