"""PP-OCRv4 text recognition with rapidocr-onnxruntime (detection, angle, recognition).

``IMAGE`` is an encoded PNG or JPEG. ``TEXT`` is the recognised lines joined with "\\n" in
reading order (top to bottom, then left to right, as RapidOCR sorts its boxes); ``LINES``
is a JSON list of ``{"text", "confidence", "box"}`` with the box's four corners flattened
to ``[x0, y0, x1, y1, x2, y2, x3, y3]`` in image pixels. An image that cannot be decoded
is an INVALID_ARG error.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


def decode(data: bytes) -> Any:
    """An RGB PIL image; transparency is flattened onto white, as on a page."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("RGBA", "LA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(page, rgba).convert("RGB")
        return image.convert("RGB")


def lines_of(result: list[Any] | None) -> list[dict[str, Any]]:
    """RapidOCR's ``[[corners, text, score], ...]`` (or None: no text) as LINES entries."""
    return [
        {
            "text": str(text),
            "confidence": round(float(score), 4),
            "box": [round(float(v), 1) for point in corners for v in point],
        }
        for corners, text, score in result or []
    ]


def _text(name: str, value: str) -> Any:
    return pb_utils.Tensor(name, np.array([value.encode("utf-8")], dtype=np.object_))


def _parameter(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return int(value) if value.strip() else default


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from rapidocr_onnxruntime import RapidOCR  # type: ignore[import-untyped]

        config = json.loads(args["model_config"])
        threads = _parameter(config, "INTRA_OP_THREADS", 2)
        self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._recognise(request) for request in requests]

    def _recognise(self, request: Any) -> Any:
        data = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)[0]
        try:
            image = decode(bytes(data))
        except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad input
            message = f"ppocr-v4: IMAGE is not a decodable PNG/JPEG image ({exc})"
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
            )
        result, _elapsed = self._ocr(image)
        lines = lines_of(result)
        return pb_utils.InferenceResponse(
            [
                _text("TEXT", "\n".join(line["text"] for line in lines)),
                _text("LINES", json.dumps(lines, ensure_ascii=False)),
            ]
        )
