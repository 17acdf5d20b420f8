"""JSON Schema (draft 2020-12) of protobuf messages in the protobuf JSON mapping.

Field names are the JSON names (lowerCamel). The protovalidate rules JSON Schema can say come
along: lengths, ranges, patterns, `in` lists, item counts; a field is `required` when a rule
makes its absence invalid (`required`, a minimum length or count, a pattern the empty string
fails) or it is marked REQUIRED (google.api.field_behavior); OUTPUT_ONLY fields are
`readOnly`. A required oneof becomes `oneOf` of its members. With a `ref`, the edge's OpenAPI
document points at each message instead of writing it out, and marks oneofs as generators
can read them (`_mark_oneofs`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from google.api import field_behavior_pb2
from google.protobuf import descriptor

from switchboard.api.buf.validate import validate_pb2

_FD = descriptor.FieldDescriptor
# The JSON type each scalar has in the proto3 JSON mapping (as written by a serializer).
SCALAR_TYPES: Final[dict[int, str]] = {
    _FD.CPPTYPE_INT32: "integer",
    _FD.CPPTYPE_UINT32: "integer",
    # proto3 JSON writes 64-bit integers as strings (and reads numbers too).
    _FD.CPPTYPE_INT64: "string",
    _FD.CPPTYPE_UINT64: "string",
    _FD.CPPTYPE_DOUBLE: "number",
    _FD.CPPTYPE_FLOAT: "number",
    _FD.CPPTYPE_BOOL: "boolean",
    _FD.CPPTYPE_ENUM: "string",
    _FD.CPPTYPE_STRING: "string",
}
_DURATION = r"^-?[0-9]+(\.[0-9]{1,9})?s$"
_WELL_KNOWN: Final[dict[str, dict[str, Any]]] = {
    "google.protobuf.Duration": {"type": "string", "pattern": _DURATION},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "required": ["@type"]},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
}
_STRING_FORMATS: Final = {"uri": "uri", "email": "email", "uuid": "uuid", "hostname": "hostname"}
_BOUNDS: Final = {
    "gte": "minimum",
    "gt": "exclusiveMinimum",
    "lte": "maximum",
    "lt": "exclusiveMaximum",
}


# Given a message type used by a field, a schema that points at it (`{"$ref": ...}`).
Ref = Callable[[descriptor.Descriptor], dict[str, Any]]


@dataclass(frozen=True)
class _Scope:
    """The messages being expanded around a field, and how to point at a message instead."""

    outer: frozenset[str]
    ref: Ref | None

    def enter(self, message: descriptor.Descriptor) -> _Scope:
        return _Scope(self.outer | {message.full_name}, self.ref)


def message_schema(message: descriptor.Descriptor, ref: Ref | None = None) -> dict[str, Any]:
    """The schema of one message.

    Without `ref` every message a field uses is written out in place (a message nested in
    itself is an untyped object there); with it, `ref` stands for each one that is not a
    well-known type, so a document can hold each message once and point at it.
    """
    return _message(message, _Scope(frozenset(), ref), top=True)


def field_schema(field: descriptor.FieldDescriptor, ref: Ref | None = None) -> dict[str, Any]:
    """The schema of one field's value (a query or path parameter, a body's member)."""
    return _field(field, _Scope(frozenset(), ref))


def is_required(field: descriptor.FieldDescriptor) -> bool:
    """Whether the field's absence makes its message invalid (see the module's docstring)."""
    return _required(field)


def is_well_known(message: descriptor.Descriptor) -> bool:
    """Whether proto3 JSON maps the message to something other than an object of its fields."""
    name = message.full_name
    return name in _WELL_KNOWN or (name.startswith("google.protobuf.") and name.endswith("Value"))


def _message(message: descriptor.Descriptor, scope: _Scope, top: bool = False) -> dict[str, Any]:
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    if is_well_known(message):
        return _scalar(message.fields_by_name["value"])  # wrappers: the bare value
    if scope.ref is not None and not top:
        return scope.ref(message)
    if message.full_name in scope.outer:
        return {"type": "object", "description": f"a {message.full_name}"}
    inner = scope.enter(message)
    schema: dict[str, Any] = {
        "type": "object",
        "title": message.full_name,
        "properties": {f.json_name: _field(f, inner) for f in message.fields},
        "additionalProperties": False,
    }
    required = [f.json_name for f in message.fields if _required(f)]
    if required:
        schema["required"] = required
    if scope.ref is not None:
        _mark_oneofs(schema, message)
        return schema
    choices = [_choice(o) for o in message.oneofs if _required_oneof(o)]
    if len(choices) == 1:
        schema["oneOf"] = choices[0]
    elif choices:
        schema["allOf"] = [{"oneOf": c} for c in choices]
    return schema


def _mark_oneofs(schema: dict[str, Any], message: descriptor.Descriptor) -> None:
    """Oneofs as generators can take them: they make a class of `properties`, not of
    `properties` beside `oneOf`. So each member names its oneof, and a message that is all
    one oneof holds at most one property. ("Exactly one" is then the server's check: the
    planner shows an ingest job's document as `{}`.)
    """
    for oneof in message.oneofs:
        members = [f.json_name for f in oneof.fields]
        if len(members) == 1 and oneof.name == f"_{oneof.fields[0].name}":
            continue  # proto3 `optional`
        rule = ", one of them required" if _required_oneof(oneof) else ""
        note = f"Oneof `{oneof.name}`: at most one of {', '.join(members)}{rule}."
        for member in members:
            schema["properties"][member]["description"] = note
        if len(members) == len(message.fields):
            schema["maxProperties"] = 1


def _field(field: descriptor.FieldDescriptor, scope: _Scope) -> dict[str, Any]:
    schema = _value(field, scope)
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    if field_behavior_pb2.OUTPUT_ONLY in behaviors:
        schema["readOnly"] = True
    return schema


def _value(field: descriptor.FieldDescriptor, scope: _Scope) -> dict[str, Any]:
    rules = _rules(field)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type.fields_by_name
        values = rules.map.values if rules.map.HasField("values") else None
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": _single(entry["value"], scope, values),
        }
        _apply(schema, rules.map, {"min_pairs": "minProperties", "max_pairs": "maxProperties"})
        if rules.map.HasField("keys"):
            names = _single(entry["key"], scope, rules.map.keys)
            schema["propertyNames"] = {k: v for k, v in names.items() if k != "type"}
        return schema
    if _is_repeated(field):
        items = _single(field, scope, rules.repeated.items if rules.HasField("repeated") else None)
        schema = {"type": "array", "items": items}
        _apply(schema, rules.repeated, {"min_items": "minItems", "max_items": "maxItems"})
        if rules.repeated.unique:
            schema["uniqueItems"] = True
        return schema
    return _single(field, scope, rules)


def _single(
    field: descriptor.FieldDescriptor,
    scope: _Scope,
    rules: validate_pb2.FieldRules | None = None,
) -> dict[str, Any]:
    """One value of the field (an item of a repeated field), with the rules on values."""
    if field.message_type is not None:
        schema = _message(field.message_type, scope)
    else:
        schema = _scalar(field)
    if rules is not None:
        _constrain(schema, rules)
    return schema


def _scalar(field: descriptor.FieldDescriptor) -> dict[str, Any]:
    if field.type == _FD.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if field.enum_type is not None:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if field.cpp_type == _FD.CPPTYPE_INT64:
        return {"type": ["string", "integer"], "format": "int64"}
    if field.cpp_type == _FD.CPPTYPE_UINT64:
        return {"type": ["string", "integer"], "format": "uint64"}
    return {"type": SCALAR_TYPES[field.cpp_type]}


def _constrain(schema: dict[str, Any], rules: validate_pb2.FieldRules) -> None:
    kind = rules.WhichOneof("type")
    if kind is None:
        return
    typed = getattr(rules, kind)
    if kind == "string":
        _apply(
            schema, typed, {"min_len": "minLength", "max_len": "maxLength", "pattern": "pattern"}
        )
        if typed.HasField("len"):
            schema["minLength"] = schema["maxLength"] = typed.len
        if typed.HasField("const"):
            schema["const"] = typed.const
        if getattr(typed, "in"):
            schema["enum"] = list(getattr(typed, "in"))
        for rule, fmt in _STRING_FORMATS.items():
            if typed.HasField(rule) and getattr(typed, rule):
                schema["format"] = fmt
    elif kind == "bytes":
        return  # lengths count bytes, not base64 characters
    elif kind == "duration":
        schema["description"] = _duration_bounds(typed)
    elif kind not in ("enum", "bool", "repeated", "map", "any", "field_mask", "timestamp"):
        _apply(schema, typed, _BOUNDS)
        if getattr(typed, "in"):
            schema["enum"] = list(getattr(typed, "in"))


def _apply(schema: dict[str, Any], rules: Any, names: dict[str, str]) -> None:
    for rule, keyword in names.items():
        if rules.HasField(rule):
            schema[keyword] = getattr(rules, rule)


def _duration_bounds(rules: Any) -> str:
    bounds = [
        f"{word} {getattr(rules, rule).ToTimedelta().total_seconds():g}s"
        for rule, word in (("gte", "at least"), ("gt", "over"), ("lte", "at most"), ("lt", "under"))
        if rules.HasField(rule)
    ]
    return 'a duration such as "1.5s"' + (f" ({', '.join(bounds)})" if bounds else "")


def _required(field: descriptor.FieldDescriptor) -> bool:
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    rules = _rules(field)
    if field_behavior_pb2.REQUIRED in behaviors or rules.required:
        return True
    if field.containing_oneof is not None or rules.ignore != validate_pb2.IGNORE_UNSPECIFIED:
        return False
    if _is_repeated(field):
        return rules.repeated.min_items > 0
    if field.has_presence:  # unset optional scalars and messages are not checked
        return False
    if rules.HasField("string"):
        return rules.string.min_len > 0 or not _matches_empty(rules.string)
    if rules.HasField("bytes"):
        return rules.bytes.min_len > 0
    return False


def _matches_empty(rules: validate_pb2.StringRules) -> bool:
    if not rules.HasField("pattern"):
        return True
    try:
        return re.search(rules.pattern, "") is not None
    except re.error:  # RE2 syntax Python lacks: do not guess
        return True


def _required_oneof(oneof: descriptor.OneofDescriptor) -> bool:
    return bool(oneof.GetOptions().Extensions[validate_pb2.oneof].required)


def _choice(oneof: descriptor.OneofDescriptor) -> list[dict[str, Any]]:
    return [{"required": [f.json_name]} for f in oneof.fields]


def _rules(field: descriptor.FieldDescriptor) -> validate_pb2.FieldRules:
    rules: validate_pb2.FieldRules = field.GetOptions().Extensions[validate_pb2.field]
    return rules


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)
