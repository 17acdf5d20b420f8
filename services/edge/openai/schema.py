"""The OpenAI-compatible routes in the OpenAPI document, written by hand.

These routes are not derived from a proto, so their schemas are declared here, with the
contract's limits (SamplingParams, GenerateStart, EmbedRequest) spelled out. Parameters
the edge refuses (n > 1, tools, logprobs, structured output, dimensions) are declared
with the only values it accepts, so the document promises exactly what is served.
Unknown parameters are ignored, so the request objects stay open.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from .requests import MAX_SEED

_REF: Final = "#/components/schemas/"
_MAX_TEXT: Final = 32768
_NULL: Final = {"type": "null"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, _NULL]}


_TEXT_PART: Final = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_STOP_WORD: Final = {"type": "string", "minLength": 1, "maxLength": 64}

SCHEMAS: Final[dict[str, Any]] = {
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            # developer is OpenAI's newer name for system.
            "role": {"enum": ["system", "developer", "user", "assistant"]},
            "content": {
                "anyOf": [
                    {"type": "string", "maxLength": _MAX_TEXT},
                    {"type": "array", "items": _TEXT_PART},
                    _NULL,
                ]
            },
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": 128},
            "messages": {
                "type": "array",
                "minItems": 1,
                "maxItems": 256,
                "items": _ref("ChatMessage"),
            },
            "stream": {"type": ["boolean", "null"]},
            "stream_options": _nullable(
                {"type": "object", "properties": {"include_usage": {"type": ["boolean", "null"]}}}
            ),
            "max_tokens": {"type": ["integer", "null"], "minimum": 0, "maximum": 4096},
            "max_completion_tokens": {"type": ["integer", "null"], "minimum": 0, "maximum": 4096},
            "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
            "top_p": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "stop": {
                "anyOf": [_STOP_WORD, {"type": "array", "maxItems": 4, "items": _STOP_WORD}, _NULL]
            },
            "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_SEED},
            "n": {"enum": [1, None]},
            "user": {"type": ["string", "null"]},
            # OpenAI's shapes, so generated clients type them; refused unless empty.
            "tools": _nullable({"type": "array", "maxItems": 0, "items": _ref("ChatTool")}),
            "functions": _nullable(
                {"type": "array", "maxItems": 0, "items": _ref("FunctionDefinition")}
            ),
            "logprobs": _nullable({"type": "boolean", "const": False}),
            "response_format": _nullable(
                {"type": "object", "properties": {"type": {"const": "text"}}}
            ),
        },
    },
    # Tool calling is refused (`tools` and `functions` may only be empty), but the items are
    # OpenAI's objects: an array without `items` makes generators drop the whole operation.
    "FunctionDefinition": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            "description": {"type": "string"},
            # A JSON Schema object describing the function's arguments.
            "parameters": {"type": "object", "additionalProperties": True},
            "strict": {"type": ["boolean", "null"]},
        },
    },
    "ChatTool": {
        "type": "object",
        "required": ["type", "function"],
        "properties": {"type": {"const": "function"}, "function": _ref("FunctionDefinition")},
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message", "finish_reason"],
                    "properties": {
                        "index": {"type": "integer"},
                        "message": {
                            "type": "object",
                            "required": ["role", "content"],
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": {"type": "string"},
                            },
                        },
                        "finish_reason": {"enum": ["stop", "length"]},
                    },
                },
            },
            "usage": _ref("Usage"),
        },
    },
    "ChatCompletionChunk": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "chat.completion.chunk"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {
                "type": "array",
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "required": ["index", "delta", "finish_reason"],
                    "properties": {
                        "index": {"type": "integer"},
                        "delta": {
                            "type": "object",
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": {"type": "string"},
                            },
                        },
                        "finish_reason": {"enum": ["stop", "length", None]},
                    },
                },
            },
            # Only with stream_options.include_usage: null, then the usage on the last chunk.
            "usage": {"anyOf": [_ref("Usage"), _NULL]},
        },
    },
    "Usage": {
        "type": "object",
        "required": ["prompt_tokens", "total_tokens"],
        "properties": {
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
        },
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": 128},
            "input": {
                "anyOf": [
                    {"type": "string", "maxLength": 65536},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 256,
                        "items": {"type": "string", "maxLength": 65536},
                    },
                ]
            },
            "encoding_format": {"enum": ["float", "base64", None]},
            "dimensions": _NULL,
            "user": {"type": ["string", "null"]},
        },
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        # A list of floats, or base64 of little-endian float32 values.
                        "embedding": {
                            "anyOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "string"},
                            ]
                        },
                    },
                },
            },
            "model": {"type": "string"},
            "usage": _ref("Usage"),
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object", "created", "owned_by"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "model"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
}

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
            "content": {"application/json": {"schema": _ref("OpenAIError")}},
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
        media: dict[str, Any] = {"schema": _ref(body)}
        if example is not None:
            media["example"] = example
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    return operation


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


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
                    "contentSchema": {"anyOf": [_ref("ChatCompletionChunk"), _ref("OpenAIError")]},
                },
            ]
        }
    },
}
_CHAT_OK: Final = {
    "description": "A chat.completion, or with `stream: true` SSE `data:` frames of "
    "chat.completion.chunk objects ending with `data: [DONE]`",
    "content": {
        "application/json": {"schema": _ref("ChatCompletion")},
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
