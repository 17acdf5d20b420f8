"""Protovalidate rules, enforced: a bad request never reaches a model."""

from __future__ import annotations

import protovalidate
from google.protobuf import any_pb2, message
from google.rpc import error_details_pb2

from .errors import InvalidArgument

_validator = protovalidate.Validator()


def validate(msg: message.Message) -> None:
    """Raises InvalidArgument (reason VALIDATION_FAILED) listing every violated rule."""
    violations = _validator.collect_violations(msg)
    if not violations:
        return
    bad = error_details_pb2.BadRequest()
    for v in violations:
        path = ".".join(
            e.field_name + ("" if e.subscript is None else f"[{e.subscript.value!r}]")
            for e in (v.proto.field.elements if v.proto.field else ())
        )
        bad.field_violations.add(field=path, description=v.proto.message, reason=v.proto.rule_id)
    detail = any_pb2.Any()
    detail.Pack(bad)
    summary = "; ".join(
        f"{f.field}: {f.description}" if f.field else f.description for f in bad.field_violations
    )
    raise InvalidArgument(
        f"invalid request: {summary}", reason="VALIDATION_FAILED", details=[detail]
    )
