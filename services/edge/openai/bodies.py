"""The bodies of the OpenAI-compatible routes as JSON Schema (OpenAPI 3.1 components).

Written by hand, since no proto declares them, with the contract's limits (SamplingParams,
GenerateStart, EmbedRequest) spelled out. Parameters the edge refuses (n > 1, tools,
logprobs, structured output, dimensions) are declared with the only values it accepts, so
the document promises exactly what is served. Unknown parameters are ignored, so the
request objects stay open. `schema.py` puts them and the paths into the document.
"""

from __future__ import annotations

from typing import Any, Final

from .requests import MAX_SEED

REF: Final = "#/components/schemas/"
_MAX_TEXT: Final = 32768
_NULL: Final = {"type": "null"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


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
                "items": ref("ChatMessage"),
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
            "tools": _nullable({"type": "array", "maxItems": 0, "items": ref("ChatTool")}),
            "functions": _nullable(
                {"type": "array", "maxItems": 0, "items": ref("FunctionDefinition")}
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
        "properties": {"type": {"const": "function"}, "function": ref("FunctionDefinition")},
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
            "usage": ref("Usage"),
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
            "usage": {"anyOf": [ref("Usage"), _NULL]},
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
            "usage": ref("Usage"),
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
            "data": {"type": "array", "items": ref("Model")},
        },
    },
}
