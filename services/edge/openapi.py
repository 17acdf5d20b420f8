"""The OpenAPI 3.1 document, generated from the same derived route table.

Bodies are typed from the proto (openapi_schemas.py): each request and response message is
a component, errors are the edge's error body, and a job's event stream is
`text/event-stream` whose frames (`x-itemSchema`, as OpenAPI 3.2's `itemSchema` says it)
carry JobEvents.
"""

from __future__ import annotations

import re
from typing import Any, Final, cast

from google.protobuf import descriptor

from switchboard.common.jsonschema import SCALAR_TYPES as _SCALARS
from switchboard.common.jsonschema import field_schema, is_required

from .openapi_schemas import Components, error_schemas, event_frame_schema
from .routes import Binding, RestRoute, RouteTable

_ERROR: Final = {"$ref": "#/components/schemas/Error"}


def document(table: RouteTable, title: str = "Switchboard", version: str = "v1") -> dict[str, Any]:
    components = Components()
    error_schemas(components)
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                # The `Link` of a created job carries it; it opens that job's events only.
                "streamToken": {"type": "apiKey", "in": "query", "name": "token"},
            },
            "schemas": components.build(),
        },
    }


def _operation(route: RestRoute, components: Components) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.rpc,
        "summary": route.summary,
        "parameters": _parameters(route),
        "responses": {
            str(route.status): {
                "description": route.response_type.DESCRIPTOR.full_name,
                "content": _content(route, components),
            },
            "default": {
                "description": "Error",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if route.body:
        operation["requestBody"] = _request_body(route, components)
    _http_semantics(route, operation)
    return operation


def _content(route: RestRoute, components: Components) -> dict[str, Any]:
    if not route.streaming:
        reply = cast(descriptor.Descriptor, route.response_type.DESCRIPTOR)
        return {"application/json": {"schema": components.message(reply)}}
    stream = {
        "type": "string",
        "description": "Server-Sent Events; each event's data is a JobEvent (JobEventFrame).",
    }
    return {"text/event-stream": {"schema": stream, "x-itemSchema": event_frame_schema(components)}}


def _request_body(route: RestRoute, components: Components) -> dict[str, Any]:
    request = _request(route)
    if route.body != "*":
        target = request.fields_by_name[route.body]
        body = target.message_type
        assert body is not None  # routes.py admits message fields only
        return {
            "description": body.full_name,
            "required": is_required(target),
            "content": {"application/json": {"schema": components.message(body)}},
        }
    # The whole request but the fields the path fills (the path wins over the body).
    bound = {b.field for b in route.bindings}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            f.json_name: field_schema(f, components.message)
            for f in request.fields
            if f.name not in bound
        },
        "additionalProperties": False,
    }
    return {"description": request.full_name, "content": {"application/json": {"schema": schema}}}


def _request(route: RestRoute) -> descriptor.Descriptor:
    return cast(descriptor.Descriptor, route.request_type.DESCRIPTOR)


def _parameters(route: RestRoute) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": _path_schema(route, b)}
        for b in route.bindings
        for p in b.params
    ]
    if route.body == "*":
        return params
    bound = {b.field for b in route.bindings} | {route.body}
    for field in _request(route).fields:
        if field.name in bound or field.cpp_type not in _SCALARS:
            continue
        params.append({"name": field.json_name, "in": "query", "schema": field_schema(field)})
    return params


def _path_schema(route: RestRoute, binding: Binding) -> dict[str, Any]:
    """A path parameter's pattern, from the bound field's: `^jobs/X$` with `jobs/{job_id}`."""
    schema: dict[str, Any] = {"type": "string"}
    if len(binding.params) != 1:
        return schema
    field = _request(route).fields_by_name[binding.field]
    pattern = str(field_schema(field).get("pattern", ""))
    head = "^" + re.escape(binding.template.removesuffix("{" + binding.params[0] + "}"))
    if "{" not in head and pattern.startswith(head):
        schema["pattern"] = "^" + pattern.removeprefix(head)
    return schema


def _http_semantics(route: RestRoute, operation: dict[str, Any]) -> None:
    """What the edge adds over the gRPC contract (docs/edge.md): headers, answers, tokens."""
    operation["parameters"].extend(_EXTRA_PARAMETERS.get(route.rpc, []))
    responses = operation["responses"]
    success = responses[str(route.status)]
    if headers := _RESPONSE_HEADERS.get(route.rpc):
        success["headers"] = headers
    for status, (description, body) in _EXTRA_RESPONSES.get(route.rpc, {}).items():
        answer: dict[str, Any] = {"description": description}
        if body == "success":
            answer = {**success, "description": description}
        elif body == "error":
            answer["content"] = {"application/json": {"schema": _ERROR}}
        if status == "429":
            answer["headers"] = {"Retry-After": RETRY_AFTER}
        responses[status] = answer
    if route.streaming:
        operation["security"] = [{"apiKey": []}, {"streamToken": []}]


def _header(name: str, description: str, where: str = "header") -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "schema": {"type": "string"}}


def _out(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


# Every 429 of the edge says when to try again (RATE_LIMITED, TOO_MANY_STREAMS, QUEUE_FULL).
RETRY_AFTER: Final = _out("Seconds to wait before trying again.")
# The answers of total parsers (docs/edge.md), where the input they read exists.
BODY_400: Final = (
    "The body is not a valid request: not UTF-8 JSON (BODY_NOT_UTF8: RFC 8259 asks for "
    "UTF-8; another encoding, a byte order mark or half a surrogate pair is refused), "
    "nested too deep (BODY_TOO_DEEP), not readable as the request (MALFORMED_REQUEST), or "
    "against the contract's rules (VALIDATION_FAILED).",
    "error",
)
STREAMS_429: Final = (
    "The client already holds its cap of open streams (SSE job streams, streamed chat "
    "completions, chat sockets): TOO_MANY_STREAMS; or it is rate limited (RATE_LIMITED).",
    "error",
)


_EXTRA_PARAMETERS: Final[dict[str, list[dict[str, Any]]]] = {
    "CreateJob": [
        _header(
            "Idempotency-Key",
            "Makes retries safe: the same key with the same request returns the first job; "
            "with another request it is refused (422 IDEMPOTENCY_KEY_REUSED).",
        ),
        _header(
            "Prefer",
            "`wait=N` (RFC 7240): answer 200 with the job if it ends within N seconds (at "
            "most 10), else 202 as without it.",
        ),
    ],
    "GetJob": [_header("If-None-Match", "An ETag from an earlier answer: 304 while unchanged.")],
    "WatchJob": [
        _header("Last-Event-ID", "Resume after this event id; EventSource sends it itself."),
        _header("lastEventId", "Last-Event-ID for clients that cannot set headers.", "query"),
        _header("after", "An older name of lastEventId.", "query"),
    ],
}
_RESPONSE_HEADERS: Final[dict[str, dict[str, Any]]] = {
    "CreateJob": {
        "Location": _out("The job's URL."),
        "Retry-After": _out("Seconds until polling the job is worthwhile; while it runs."),
        "Link": _out('The job\'s event stream with a stream token, rel="events".'),
        "Preference-Applied": _out("`wait=N` when a Prefer wait was honoured."),
    },
    "GetJob": {
        "ETag": _out("Strong validator of this representation."),
        "Cache-Control": _out("private, no-cache: revalidate with If-None-Match."),
        "Retry-After": _out("Seconds until asking again is worthwhile; while the job runs."),
    },
}
# Status -> (description, "success" for the success body, "error" for the error body, or
# "" for none).
_EXTRA_RESPONSES: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "CreateJob": {
        "200": ("The job, which ended within the Prefer: wait time.", "success"),
        "400": BODY_400,
        "413": ("The body is larger than the edge accepts (BODY_TOO_LARGE).", "error"),
        "422": ("The Idempotency-Key came with another request before.", "error"),
    },
    "CancelJob": {
        "400": BODY_400,
        "413": ("The body is larger than the edge accepts.", "error"),
    },
    "GetJob": {"304": ("Unchanged since the If-None-Match ETag.", "")},
    "WatchJob": {
        "204": ("Nothing after the cursor and the job is over: stop reconnecting.", ""),
        "400": (
            "The Last-Event-ID (or lastEventId, after, afterCursor) is not an event cursor "
            "in the event log's range (INVALID_CURSOR).",
            "error",
        ),
        "429": STREAMS_429,
    },
    "GetJobResult": {"409": ("The job still runs (JOB_NOT_FINISHED); see Retry-After.", "error")},
}
