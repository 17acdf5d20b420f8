"""The schemas of the OpenAPI document's `components`: every message once, by name.

Each message a JobService body uses becomes one schema under `components/schemas`, named
after the message (`Job`, `JobInput`, `Status`); fields of message type point at it with
`$ref`, so a generated client gets one class per message and recursion needs no cut-off.
The proto3 JSON mapping decides the shapes (common/jsonschema.py). On top of the messages:
`google.rpc.Status` details typed as the detail messages the services send, the edge's
error body, and the frame of the job event stream.
"""

from __future__ import annotations

from typing import Any, Final

import grpc
from google.protobuf import descriptor
from google.rpc import error_details_pb2, status_pb2

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common.jsonschema import message_schema

PREFIX: Final = "#/components/schemas/"
# The package whose messages keep their bare names: the job API's.
HOME_PACKAGE: Final = events_pb2.DESCRIPTOR.package
# The rich error details the services attach (common/errors.py, validation, retries).
DETAIL_TYPES: Final = (
    error_details_pb2.ErrorInfo.DESCRIPTOR,
    error_details_pb2.RetryInfo.DESCRIPTOR,
    error_details_pb2.BadRequest.DESCRIPTOR,
)
_TYPE_URL: Final = "type.googleapis.com/"
_ANY: Final = {
    "type": "object",
    "description": "A detail of another type: its fields next to its `@type` URL.",
    "required": ["@type"],
    "properties": {"@type": {"type": "string"}},
    "additionalProperties": True,
}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": PREFIX + name}


class Components:
    """Collects message schemas by name as the document refers to them."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._taken: set[str] = set()
        self._pending: list[descriptor.Descriptor] = []
        self.schemas: dict[str, Any] = {}

    def message(self, message: descriptor.Descriptor) -> dict[str, Any]:
        """A `$ref` to the message's schema, which `build` then writes."""
        return ref(self._name(message))

    def build(self) -> dict[str, Any]:
        """Every schema referred to so far, and the ones they refer to in turn."""
        while self._pending:
            message = self._pending.pop(0)
            schema = message_schema(message, self.message)
            name = self._names[message.full_name]
            # Generators name classes after titles: the short name, the proto name aside.
            schema.update(title=name, description=f"The message {message.full_name}.")
            if message.full_name == status_pb2.Status.DESCRIPTOR.full_name:
                schema["properties"]["details"]["items"] = self._detail()
            if message in DETAIL_TYPES:
                _typed(schema, message)
            self.schemas[name] = schema
        return self.schemas

    def _name(self, message: descriptor.Descriptor) -> str:
        if name := self._names.get(message.full_name):
            return name
        # Nested messages join their outer names (StageResult.Item -> StageResultItem); the
        # other services' messages take their service's name (InferenceUsage: the OpenAI
        # routes have a Usage of their own); a name another package took first gets its
        # whole package (google.rpc.X -> GoogleRpcX).
        package = message.file.package
        name = message.full_name.removeprefix(package + ".").replace(".", "")
        if package.startswith("switchboard.") and package != HOME_PACKAGE:
            name = package.split(".")[1].capitalize() + name
        if name in self._taken:
            name = "".join(part[:1].upper() + part[1:] for part in message.full_name.split("."))
        self._names[message.full_name] = name
        self._taken.add(name)
        self._pending.append(message)
        return name

    def _detail(self) -> dict[str, Any]:
        """A detail is a known detail message (with its `@type`) or any other message."""
        self.schemas.setdefault("AnyDetail", dict(_ANY))
        return {"anyOf": [*(self.message(d) for d in DETAIL_TYPES), ref("AnyDetail")]}


def _typed(schema: dict[str, Any], message: descriptor.Descriptor) -> None:
    """A detail message as proto3 JSON writes it inside an Any: with its type URL first."""
    schema["properties"] = {
        "@type": {"const": _TYPE_URL + message.full_name},
        **schema["properties"],
    }
    schema["required"] = ["@type", *schema.get("required", [])]


def error_schemas(components: Components) -> None:
    """The edge's error body: `{"error": {code, status, message, details}}` (AIP-193)."""
    components.message(status_pb2.Status.DESCRIPTOR)
    components.build()
    details = components.schemas["Status"]["properties"]["details"]
    components.schemas["ErrorStatus"] = {
        "type": "object",
        "required": ["code", "status", "message", "details"],
        "properties": {
            "code": {"type": "integer", "description": "The HTTP status of the answer."},
            "status": {"type": "string", "enum": [code.name for code in grpc.StatusCode]},
            "message": {"type": "string"},
            "details": details,
        },
    }
    components.schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": ref("ErrorStatus")},
    }


def event_frame_schema(components: Components) -> dict[str, Any]:
    """One Server-Sent Event of a job's stream; its `data` is a JobEvent (or an Error)."""
    job_event = components.message(events_pb2.JobEvent.DESCRIPTOR)
    payloads = [f.name for f in events_pb2.JobEvent.DESCRIPTOR.oneofs_by_name["payload"].fields]
    components.schemas["JobEventFrame"] = {
        "type": "object",
        "description": (
            "One event of `text/event-stream`. The stream opens with `retry: 2000`; "
            "heartbeats are `: heartbeat` comments without an id."
        ),
        "required": ["event", "data"],
        "properties": {
            "id": {"type": "string", "description": "The event's cursor: Last-Event-ID."},
            "event": {
                "type": "string",
                "enum": [*payloads, "message", "error"],
                "description": "The JobEvent's payload field; `error` ends the stream.",
            },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [job_event, ref("Error")]},
            },
        },
    }
    return ref("JobEventFrame")
