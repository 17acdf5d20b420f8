"""The OCR model's outputs as an ExtractTextResponse (pure; the real model: test_servicer)."""

from __future__ import annotations

import json

import pytest

from switchboard.inference.errors import BackendError
from switchboard.inference.models import OCR, Model
from switchboard.inference.ocr import response
from switchboard.inference.triton import OcrOutput

MODEL = Model("ppocr-v4", "ppocr-v4", OCR)


def test_lines_become_text_lines() -> None:
    lines = [
        {"text": "HELLO", "confidence": 0.98, "box": [1, 2, 3, 4, 5, 6, 7, 8]},
        {"text": "world", "confidence": 0.5, "box": [0] * 8},
    ]

    reply = response(OcrOutput("HELLO\nworld", json.dumps(lines)), MODEL)

    assert reply.text == "HELLO\nworld" and reply.model == "ppocr-v4"
    assert [(line.text, round(line.confidence, 2)) for line in reply.lines] == [
        ("HELLO", 0.98),
        ("world", 0.5),
    ]
    assert list(reply.lines[0].box) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_no_text_is_an_empty_answer() -> None:
    reply = response(OcrOutput("", "[]"), MODEL)

    assert (reply.text, len(reply.lines)) == ("", 0)


@pytest.mark.parametrize(
    "lines",
    [
        "not json",
        '{"text": "x"}',
        '[{"text": "x"}]',
        '[{"text": "x", "confidence": "high", "box": []}]',
    ],
)
def test_malformed_lines_are_the_models_fault(lines: str) -> None:
    with pytest.raises(BackendError, match="malformed LINES"):
        response(OcrOutput("x", lines), MODEL)
