"""OpenAI's JSON requests read into InferenceService messages.

Reading checks JSON types only and names the offending parameter; value rules (ranges,
sizes, roles) are the contract's, checked by protovalidate on the built message, and an
error's `param` is mapped back from the field path it names (`param_of`). Unknown parameters
are ignored, as OpenAI-compatible servers do, except the few whose meaning we cannot honour
(`n` > 1, tools, logprobs, structured output): those are refused, not silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import InvalidArgument

# OpenAI's default; the contract's 0 would mean greedy decoding.
DEFAULT_TEMPERATURE: Final = 1.0
_ROLES: Final = {"developer": "system"}
_INT32: Final = 2**31 - 1
# The contract's seed is uint64, but the chat model takes 0..2**32 - 2 (llama.cpp's range;
# 2**32 - 1 means "random") and the inference service only masks to 32 bits.
MAX_SEED: Final = 2**32 - 2
# Contract field path prefixes that OpenAI's flat parameters do not have.
_PREFIXES: Final = ("start.params.", "start.")
_RENAMED: Final = {"texts": "input", "request_id": "id"}
_SUBSCRIPT: Final = re.compile(r"^(?P<name>[A-Za-z_]+)(?P<rest>.*)$")
# What may travel as a gRPC metadata value and an Envoy hash key.
_TOKEN: Final = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True)
class ChatRequest:
    start: pb.GenerateStart
    stream: bool
    include_usage: bool
    user: str


def invalid(param: str, description: str) -> InvalidArgument:
    """A parameter we refuse, in the same shape as protovalidate's refusals."""
    bad = error_details_pb2.BadRequest()
    bad.field_violations.add(field=param, description=description)
    detail = any_pb2.Any()
    detail.Pack(bad)
    return InvalidArgument(
        f"invalid request: {param}: {description}", reason="VALIDATION_FAILED", details=[detail]
    )


def is_token(value: str) -> bool:
    return _TOKEN.fullmatch(value) is not None


def hashed(value: str) -> str:
    """A stable header-safe stand-in for a value that is not one (any text of any length)."""
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:32]


def parse_chat(body: Mapping[str, Any]) -> ChatRequest:
    if _integer(body, "n", 1) != 1:
        raise invalid("n", "only n=1 is supported")
    _refuse_unsupported(body)
    # stream_options without stream is ignored, where OpenAI would refuse it.
    options = _object(body, "stream_options")
    return ChatRequest(
        start=generate_start(body),
        stream=_boolean(body, "stream"),
        include_usage=_boolean(options, "include_usage", "stream_options."),
        user=_string(body, "user"),
    )


def generate_start(body: Mapping[str, Any]) -> pb.GenerateStart:
    """The model, conversation and sampling parameters of a chat request (or a WS start)."""
    max_tokens = _integer(body, "max_completion_tokens", None, -_INT32, _INT32)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 0, -_INT32, _INT32)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    elif stop is not None and not _strings(stop):
        raise invalid("stop", "must be a string or a list of strings")
    params = pb.SamplingParams(
        max_tokens=max_tokens or 0,
        temperature=_number(body, "temperature", DEFAULT_TEMPERATURE),
        top_p=_number(body, "top_p", 0.0),
        stop=stop or [],
        seed=_integer(body, "seed", 0, 0, MAX_SEED) or 0,
    )
    return pb.GenerateStart(
        model=_string(body, "model", required=True),
        messages=_messages(body.get("messages")),
        params=params,
    )


@dataclass(frozen=True)
class EmbeddingsRequest:
    embed: pb.EmbedRequest
    # "float" or "base64"
    encoding: str
    user: str


def parse_embeddings(body: Mapping[str, Any]) -> EmbeddingsRequest:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, list):
        raise invalid("input", "must be a string or a list of strings")
    elif not _strings(texts):
        raise invalid("input", "token arrays are not supported; send the text itself")
    encoding = _string(body, "encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid("encoding_format", "must be 'float' or 'base64'")
    if body.get("dimensions") is not None:
        raise invalid("dimensions", "is not supported: each model has its own fixed size")
    request = pb.EmbedRequest(model=_string(body, "model", required=True), texts=texts)
    return EmbeddingsRequest(request, encoding, _string(body, "user"))


def param_of(field: str) -> str:
    """The OpenAI parameter for a contract field path: start.params.top_p -> top_p."""
    for prefix in _PREFIXES:
        if field.startswith(prefix):
            field = field.removeprefix(prefix)
            break
    match = _SUBSCRIPT.match(field)
    if match is None:
        return field
    return _RENAMED.get(match["name"], match["name"]) + match["rest"]


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for name in ("tools", "functions"):
        value = body.get(name)
        if value is not None and value != []:
            raise invalid(name, "tool calling is not supported")
    logprobs = body.get("logprobs")
    # Identity, not equality: 0 == False in Python, not in JSON.
    if logprobs is not None and logprobs is not False:
        raise invalid("logprobs", "log probabilities are not supported")
    response_format = _object(body, "response_format")
    if response_format.get("type", "text") != "text":
        raise invalid("response_format", "only the 'text' response format is supported")


def _messages(value: object) -> list[pb.ChatMessage]:
    if not isinstance(value, list) or not value:
        raise invalid("messages", "must be a non-empty list of messages")
    messages = []
    for index, item in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise invalid(where, "must be an object with role and content")
        role = item.get("role")
        if not isinstance(role, str):
            raise invalid(f"{where}.role", "must be a string")
        content = _content(item.get("content"), f"{where}.content")
        messages.append(pb.ChatMessage(role=_ROLES.get(role, role), content=content))
    return messages


def _content(value: object, where: str) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        parts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise invalid(where, "only text content parts are supported")
            if not isinstance(text := part.get("text"), str):
                raise invalid(where, "a text part needs a string 'text'")
            parts.append(text)
        return "".join(parts)
    raise invalid(where, "must be a string or a list of text parts")


def _string(body: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise invalid(name, "is required and must be a string" if required else "must be a string")
    return value


def _boolean(body: Mapping[str, Any], name: str, where: str = "") -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(where + name, "must be a boolean")
    return value


def _integer(
    body: Mapping[str, Any], name: str, default: int | None, low: int = -_INT32, high: int = _INT32
) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # bool is an int in Python, not in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(name, "must be an integer")
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}")
    return value


def _number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid(name, "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer past float's range
        raise invalid(name, "must be a number") from None
    if not math.isfinite(number):
        raise invalid(name, "must be a number")
    return number


def _object(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(name, "must be an object")
    return value


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
