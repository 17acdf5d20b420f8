"""Protobuf <-> proto3 JSON for the edge: lowerCamelCase out, strict parsing in.

Every JSON the edge writes goes through `dumps` with sorted keys, so the same message
always gives the same bytes on every edge replica (ETags depend on it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format, message

from .errors import MalformedRequest


def to_dict(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=False)


def dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def message_json(msg: message.Message) -> bytes:
    return dumps(to_dict(msg))


def parse_body(raw: bytes, target: message.Message) -> None:
    """Merges a JSON object into `target`; an empty body is an empty object."""
    if not raw.strip():
        return
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedRequest("request body must be a JSON object")
    _parse(data, target, "request body")


def parse_query(items: Iterable[tuple[str, str]], target: message.Message) -> None:
    """Maps `?field=value` (proto or JSON field names) onto top-level fields of `target`.

    A name given more than once becomes a list, which only a repeated field accepts.
    """
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    data = {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}
    if data:
        _parse(data, target, "query parameters")


def _parse(data: dict[str, Any], target: message.Message, where: str) -> None:
    try:
        json_format.ParseDict(data, target, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise MalformedRequest(f"invalid {where}: {exc}") from exc
