"""A minimal OpenAPI 3.1 document, generated from the same derived route table."""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor

from .routes import RestRoute, RouteTable

_FD = descriptor.FieldDescriptor
_SCALARS: Final[dict[int, str]] = {
    _FD.CPPTYPE_INT32: "integer",
    _FD.CPPTYPE_UINT32: "integer",
    # proto3 JSON writes 64-bit integers as strings.
    _FD.CPPTYPE_INT64: "string",
    _FD.CPPTYPE_UINT64: "string",
    _FD.CPPTYPE_DOUBLE: "number",
    _FD.CPPTYPE_FLOAT: "number",
    _FD.CPPTYPE_BOOL: "boolean",
    _FD.CPPTYPE_ENUM: "string",
    _FD.CPPTYPE_STRING: "string",
}
_ERROR: Final = {"$ref": "#/components/schemas/Error"}


def document(table: RouteTable, title: str = "Switchboard", version: str = "v1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _error_schema()},
        },
    }


def _operation(route: RestRoute) -> dict[str, Any]:
    media = "text/event-stream" if route.streaming else "application/json"
    operation: dict[str, Any] = {
        "operationId": route.rpc,
        "summary": route.summary,
        "parameters": _parameters(route),
        "responses": {
            str(route.status): {
                "description": route.response_type.DESCRIPTOR.full_name,
                "content": {media: {"schema": {"type": "object"}}},
            },
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if route.body:
        target = route.request_type.DESCRIPTOR
        if route.body != "*":
            target = target.fields_by_name[route.body].message_type or target
        operation["requestBody"] = {
            "description": target.full_name,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return operation


def _parameters(route: RestRoute) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in route.path_params
    ]
    if route.body == "*":
        return params
    bound = {b.field for b in route.bindings} | {route.body}
    for field in route.request_type.DESCRIPTOR.fields:
        if field.name in bound or field.cpp_type not in _SCALARS:
            continue
        params.append(
            {"name": field.json_name, "in": "query", "schema": {"type": _SCALARS[field.cpp_type]}}
        )
    return params


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "status": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}},
                },
            }
        },
    }
