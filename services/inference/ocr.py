"""ExtractText: the OCR model's TEXT and LINES outputs as an ExtractTextResponse."""

from __future__ import annotations

import json

from switchboard.api.inference.v1 import inference_pb2 as pb

from .errors import BackendError
from .models import Model
from .triton import OcrOutput, TritonClient


async def extract_text(
    triton: TritonClient, model: Model, image: bytes, timeout_s: float
) -> pb.ExtractTextResponse:
    output = await triton.extract_text(
        model.triton_name, image, batched=model.batched, timeout_s=timeout_s
    )
    return response(output, model)


def response(output: OcrOutput, model: Model) -> pb.ExtractTextResponse:
    """LINES is JSON [{text, confidence, box[8]}]; anything else is the model's fault."""
    try:
        lines = [
            pb.TextLine(
                text=str(line["text"]),
                confidence=float(line["confidence"]),
                box=[float(v) for v in line["box"]],
            )
            for line in json.loads(output.lines_json)
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise BackendError(
            f"{model.name} returned malformed LINES: {exc}", metadata={"model": model.name}
        ) from exc
    return pb.ExtractTextResponse(text=output.text, lines=lines, model=model.name)
