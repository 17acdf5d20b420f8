"""Protobuf <-> proto3 JSON for the edge: lowerCamelCase out, strict parsing in.

Every JSON the edge writes goes through `dumps` with sorted keys, so the same message
always gives the same bytes on every edge replica (ETags depend on it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from google.protobuf import descriptor, json_format, message

from . import bodies
from .errors import MalformedRequest

# An integer in a query string, bounded in length before anything converts it (64 bits
# have at most 20 digits).
_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")
_INTEGER_TYPES: Final = frozenset(
    {
        descriptor.FieldDescriptor.CPPTYPE_INT32,
        descriptor.FieldDescriptor.CPPTYPE_INT64,
        descriptor.FieldDescriptor.CPPTYPE_UINT32,
        descriptor.FieldDescriptor.CPPTYPE_UINT64,
    }
)


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
    data = bodies.load_json(raw)
    if not isinstance(data, dict):
        raise MalformedRequest("request body must be a JSON object")
    _parse(data, target, "request body")


def parse_query(items: Iterable[tuple[str, str]], target: message.Message) -> None:
    """Maps `?field=value` (proto or JSON field names) onto top-level fields of `target`.

    A name given more than once becomes a list, which only a repeated field accepts.
    """
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        if _is_integer_field(target, key) and not _INTEGER.fullmatch(value):
            raise MalformedRequest(f"invalid query parameters: {key} must be an integer")
        grouped.setdefault(key, []).append(value)
    data = {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}
    if data:
        _parse(data, target, "query parameters")


def _is_integer_field(target: message.Message, name: str) -> bool:
    fields = target.DESCRIPTOR.fields
    field = next((f for f in fields if name in (f.name, f.json_name)), None)
    return field is not None and field.cpp_type in _INTEGER_TYPES


def _parse(data: dict[str, Any], target: message.Message, where: str) -> None:
    try:
        json_format.ParseDict(data, target, ignore_unknown_fields=False)
    # ParseDict wraps most failures in ParseError, not all (a huge float for an enum or an
    # integer field overflows on its way to int).
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
        raise MalformedRequest(f"invalid {where}: {exc}") from exc
