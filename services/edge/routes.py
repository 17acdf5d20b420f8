"""The REST surface, derived from JobService's `google.api.http` annotations.

Each RPC's `HttpRule` gives the verb, the path template and the body field; the
template `/v1/{name=jobs/*}/cancel` compiles to the Starlette path
`/v1/jobs/{job_id}/cancel` plus a binding that rebuilds `name = "jobs/{job_id}"`.
Nothing here is written per route, so REST and gRPC cannot drift apart.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message, message_factory

from switchboard.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc

from . import codec
from .errors import MalformedRequest

_VARIABLE: Final = re.compile(r"\{(?P<field>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<pattern>[^}]*))?\}")
_VERBS: Final = ("get", "put", "post", "delete", "patch")

# RPCs that only start work the client then follows: 202 Accepted, not 200.
ACCEPTED_RPCS: Final = frozenset({"CreateJob", "CancelJob"})


@dataclass(frozen=True)
class Binding:
    """A request field filled from path parameters, e.g. name <- "jobs/{job_id}"."""

    field: str
    template: str
    params: tuple[str, ...]


@dataclass(frozen=True)
class RestRoute:
    rpc: str
    method: str
    # The annotation as written, e.g. "/v1/{name=jobs/*}/cancel".
    template: str
    # The Starlette (and OpenAPI) path, e.g. "/v1/jobs/{job_id}/cancel".
    path: str
    # "" (no body), "*" (the whole request) or the name of one message field.
    body: str
    streaming: bool
    bindings: tuple[Binding, ...]
    request_type: type[message.Message]
    response_type: type[message.Message]
    summary: str

    @property
    def status(self) -> int:
        return 202 if self.rpc in ACCEPTED_RPCS else 200

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(p for b in self.bindings for p in b.params)


class RouteTable:
    def __init__(self, routes: Iterable[RestRoute]) -> None:
        self.routes = tuple(routes)
        self.by_rpc = {r.rpc: r for r in self.routes}

    def by_path(self) -> dict[str, dict[str, RestRoute]]:
        """Routes grouped by path, then by HTTP method, in declaration order."""
        grouped: dict[str, dict[str, RestRoute]] = {}
        for route in self.routes:
            grouped.setdefault(route.path, {})[route.method] = route
        return grouped


def job_routes() -> RouteTable:
    service = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
    return derive(service, jobs_pb2_grpc.JobServiceServicer)


def derive(service: descriptor.ServiceDescriptor, servicer: type) -> RouteTable:
    """One route per annotated RPC; the servicer class lends its docstrings as summaries."""
    routes = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        routes.append(_route(method, options.Extensions[annotations_pb2.http], servicer))
    return RouteTable(routes)


def _route(
    method: descriptor.MethodDescriptor, rule: http_pb2.HttpRule, servicer: type
) -> RestRoute:
    verb = rule.WhichOneof("pattern")
    if verb not in _VERBS:
        raise ValueError(f"{method.full_name}: unsupported HttpRule pattern {verb!r}")
    if rule.additional_bindings:
        raise ValueError(f"{method.full_name}: additional_bindings are not supported")
    template = getattr(rule, verb)
    path, bindings = compile_template(template)
    request_type = message_factory.GetMessageClass(method.input_type)
    if rule.body not in ("", "*"):
        field = method.input_type.fields_by_name.get(rule.body)
        if field is None or field.message_type is None:
            raise ValueError(f"{method.full_name}: body {rule.body!r} is not a message field")
    return RestRoute(
        rpc=method.name,
        method=verb.upper(),
        template=template,
        path=path,
        body=rule.body,
        streaming=method.server_streaming,
        bindings=bindings,
        request_type=request_type,
        response_type=message_factory.GetMessageClass(method.output_type),
        summary=_summary(servicer, method.name),
    )


def compile_template(template: str) -> tuple[str, tuple[Binding, ...]]:
    """`/v1/{name=jobs/*}` -> (`/v1/jobs/{job_id}`, name <- `jobs/{job_id}`).

    Each `*` becomes a parameter named after the collection segment before it, made
    singular (`jobs/*` -> `job_id`); a bare `{field}` keeps the field's name.
    """
    bindings: list[Binding] = []

    def replace(match: re.Match[str]) -> str:
        field, pattern = match["field"], match["pattern"] or "*"
        parts, params, collection = [], [], ""
        for segment in pattern.split("/"):
            if segment == "**":
                raise ValueError(f"{template}: '**' path variables are not supported")
            if segment == "*":
                param = f"{collection.removesuffix('s')}_id" if collection else field
                parts.append(f"{{{param}}}")
                params.append(param)
            else:
                parts.append(segment)
                collection = segment
        bindings.append(Binding(field, "/".join(parts), tuple(params)))
        return "/".join(parts)

    path = _VARIABLE.sub(replace, template)
    names = [p for b in bindings for p in b.params]
    if len(set(names)) != len(names):
        raise ValueError(f"{template}: path parameters {names} collide")
    return path, tuple(bindings)


def expand(template: str, fields: Mapping[str, str]) -> str:
    """The URL path of an annotation template for concrete field values."""
    return _VARIABLE.sub(lambda m: fields[m["field"]], template)


def build_request(
    route: RestRoute,
    path_params: Mapping[str, str],
    query: Sequence[tuple[str, str]],
    body: bytes,
) -> message.Message:
    """The request message per the HttpRule: body field, then query, then path wins."""
    request = route.request_type()
    if route.body == "*":
        codec.parse_body(body, request)
        if query:
            raise MalformedRequest("this route takes no query parameters")
    else:
        if route.body:
            codec.parse_body(body, getattr(request, route.body))
        codec.parse_query(query, request)
    for binding in route.bindings:
        setattr(request, binding.field, binding.template.format_map(path_params))
    return request


def _summary(servicer: type, rpc: str) -> str:
    doc = inspect.getdoc(getattr(servicer, rpc, None)) or ""
    return " ".join(doc.split()) or rpc
