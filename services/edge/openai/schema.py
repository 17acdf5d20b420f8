"""The OpenAI-compatible routes in the OpenAPI document, written by hand.

These routes are not derived from a proto: their operations are declared here, their
bodies in `bodies.py`.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from .bodies import SCHEMAS, ref

_ERRORS: Final = {
    "400": "Invalid request (OpenAI error shape; `param` names the parameter)",
    "401": "Missing or unknown API key",
    "404": "Unknown model",
    "429": "Rate limited, or the model's queue is full (Retry-After)",
    "500": "Internal error",
    "503": "The inference service is unavailable",
    "default": "Error",
}
# Where a body is read: the edge's total JSON parser answers these (docs/edge.md).
_BODY_400: Final = (
    "Invalid request (OpenAI error shape; `param` names the parameter); a body that is not "
    "UTF-8 JSON (RFC 8259: another encoding, a byte order mark, half a surrogate pair) is "
    "`body_not_utf8`"
)
_STREAMS_429: Final = (
    "Rate limited, or the model's queue is full; with `stream: true` also "
    "`too_many_streams`: the client holds its cap of open streams (Retry-After)"
)


def _errors(descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """The error answers, with these descriptions by status instead of the general ones."""
    answers: dict[str, Any] = {}
    for status, description in (_ERRORS | (descriptions or {})).items():
        answers[status] = {
            "description": description,
            "content": {"application/json": {"schema": ref("OpenAIError")}},
        }
    answers["429"]["headers"] = {
        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}
    }
    return answers


def _operation(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    body: str | None = None,
    example: dict[str, Any] | None = None,
    errors: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["OpenAI-compatible"],
        "responses": {"200": ok, **(errors or _errors())},
    }
    if body is not None:
        media: dict[str, Any] = {"schema": ref(body)}
        if example is not None:
            media["example"] = example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    return operation


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


# One event of a streamed completion: a chunk, an error (the stream then ends), or [DONE].
_CHAT_EVENT: Final = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [ref("ChatCompletionChunk"), ref("OpenAIError")]},
                },
            ]
        }
    },
}
_CHAT_OK: Final = {
    "description": "A chat.completion, or with `stream: true` SSE `data:` frames of "
    "chat.completion.chunk objects ending with `data: [DONE]`",
    "content": {
        "application/json": {"schema": ref("ChatCompletion")},
        "text/event-stream": {"schema": _CHAT_EVENT},
    },
}

PATHS: Final[dict[str, Any]] = {
    "/v1/chat/completions": {
        "post": _operation(
            "CreateChatCompletion",
            "OpenAI Chat Completions, streamed or whole, served by the inference service",
            _CHAT_OK,
            "ChatCompletionRequest",
            {
                "model": "default-chat",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 16,
            },
            _errors({"400": _BODY_400, "429": _STREAMS_429}),
        )
    },
    "/v1/embeddings": {
        "post": _operation(
            "CreateEmbeddings",
            "OpenAI Embeddings: one vector per input text",
            _json("An embedding list", "EmbeddingList"),
            "EmbeddingRequest",
            {"model": "default-embed", "input": ["The quick brown fox."]},
            _errors({"400": _BODY_400}),
        )
    },
    "/v1/models": {
        "get": _operation(
            "ListOpenAIModels",
            "Every model and alias the inference service serves",
            _json("A model list", "ModelList"),
        )
    },
    "/v1/models/{model_id}": {
        "get": {
            **_operation("GetOpenAIModel", "One model or alias", _json("A model", "Model")),
            "parameters": [
                {
                    "name": "model_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                    "example": "default-chat",
                }
            ],
        }
    },
}


def add_openai(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the OpenAI-compatible paths and their schemas added."""
    document.setdefault("paths", {}).update(copy.deepcopy(PATHS))
    document.setdefault("components", {}).setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
    return document
