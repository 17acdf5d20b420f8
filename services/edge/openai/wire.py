"""OpenAI's JSON answers: completions, chunks, embeddings, models and the error object."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from typing import Any, Final

from google.rpc import error_details_pb2

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import SwitchboardError

from .requests import param_of

OWNER: Final = "switchboard"
_FINISH: Final = {pb.FINISH_REASON_LENGTH: "length"}
_MODEL_REASONS: Final = frozenset({"MODEL_NOT_FOUND", "MODEL_TASK_MISMATCH"})
_TYPES: Final = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def usage(counts: pb.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.prompt_tokens + counts.completion_tokens,
    }


def finish_reason(done: pb.GenerateDone) -> str:
    return _FINISH.get(done.finish_reason, "stop")


def completion(
    completion_id: str, created: int, text: str, done: pb.GenerateDone
) -> dict[str, Any]:
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(done),
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": done.model,
        "choices": [choice],
        "usage": usage(done.usage),
    }


def chunk(
    completion_id: str,
    created: int,
    model: str,
    delta: Mapping[str, str] | None,
    finish: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A chat.completion.chunk; `delta` None gives the usage-only chunk (no choices)."""
    choices = [] if delta is None else [
        {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
    ]  # fmt: skip
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }


def embeddings(reply: pb.EmbedResponse, encoding: str) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": index, "embedding": _vector(row.values, encoding)}
        for index, row in enumerate(reply.embeddings)
    ]
    # The inference service does not count embedding tokens; zero says "not measured".
    return {
        "object": "list",
        "data": data,
        "model": reply.model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


def model_names(reply: pb.ListModelsResponse) -> list[str]:
    """Every name a client may ask for: each model, then its aliases."""
    return [name for info in reply.models for name in (info.name, *info.aliases)]


def error_object(error: SwitchboardError, status: int) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": _param(error),
            "code": error.reason.lower(),
        }
    }


def retry_after(error: SwitchboardError) -> str | None:
    """Whole seconds from the error's RetryInfo (a full queue, an open breaker), if any."""
    for detail in error.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return str(max(1, math.ceil(info.retry_delay.ToTimedelta().total_seconds())))
    return None


def _param(error: SwitchboardError) -> str | None:
    if error.reason in _MODEL_REASONS:
        return "model"
    for detail in error.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad) and bad.field_violations and bad.field_violations[0].field:
            return param_of(bad.field_violations[0].field)
    return None


def _vector(values: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        # OpenAI's base64: the little-endian float32 array.
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return list(values)
