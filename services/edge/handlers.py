"""REST endpoints: HTTP request -> validated request message -> planner -> HTTP answer.

One generic endpoint serves every derived route; what differs per RPC is data on the
route (verb, body field, streaming, 200/202). A bad request never leaves the edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypedDict

import grpc
from google.protobuf import message
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common import telemetry
from switchboard.common.errors import InvalidArgument, SwitchboardError
from switchboard.common.validation import validate

from . import codec
from .auth import ApiKeys
from .errors import MethodNotAllowed, error_response, internal_error, upstream_error
from .planner import Metadata, Planner
from .routes import RestRoute, RouteTable, build_request, expand
from .sse import EventStream, Upstream

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 1 << 20
# Long enough for the planner to reject a watch; short enough that headers go out promptly.
FIRST_EVENT_WAIT_SECONDS: Final = 1.0
_UNFINISHED: Final = frozenset({jobs_pb2.Job.QUEUED, jobs_pb2.Job.RUNNING, jobs_pb2.Job.CANCELLING})


class EdgeState(TypedDict):
    """What the lifespan hands every request (`request.state[...]`)."""

    planner: Planner
    keys: ApiKeys
    routes: RouteTable
    heartbeat_seconds: float
    draining: asyncio.Event


EdgeRequest = Request[EdgeState]
Endpoint = Callable[[EdgeRequest], Awaitable[Response]]


def starlette_routes(table: RouteTable) -> list[Route]:
    """One Starlette route per path, so a wrong verb gets 405 with the full Allow list."""
    return [
        Route(path, _endpoint(by_method), methods=list(by_method))
        for path, by_method in table.by_path().items()
    ]


def _endpoint(by_method: Mapping[str, RestRoute]) -> Endpoint:
    async def endpoint(request: EdgeRequest) -> Response:
        route = by_method["GET" if request.method == "HEAD" else request.method]
        if route.streaming and request.method == "HEAD":
            # Starlette allows HEAD wherever GET is; HEAD must not open a watch.
            refusal = MethodNotAllowed("HEAD cannot open an event stream")
            return error_response(refusal, {"Allow": "GET"})
        try:
            return await _handle(route, request)
        except SwitchboardError as exc:
            fields = {"rpc": route.rpc, "reason": exc.reason, "code": exc.code.name}
            log.info("request failed", extra={"fields": fields})
            return error_response(exc)
        except Exception:  # the one place a request's failure becomes HTTP
            log.exception("unexpected error", extra={"fields": {"rpc": route.rpc}})
            return error_response(internal_error())

    return endpoint


async def _handle(route: RestRoute, request: EdgeRequest) -> Response:
    state = request.state
    client = state["keys"].client_id(request.headers.get("authorization"))
    job_id = request.path_params.get("job_id", "")
    # Each request runs in its own task, so these die with it; no reset needed.
    telemetry.client_id_var.set(client)
    telemetry.job_id_var.set(job_id)
    pairs = [("x-client-id", client), *([("x-job-id", job_id)] if job_id else [])]
    metadata = telemetry.trace_metadata(*pairs)
    if route.streaming:
        return await _watch(route, request, metadata)
    body = await _body(request) if route.body else b""
    query = request.query_params.multi_items()
    rpc_request = build_request(route, request.path_params, query, body)
    validate(rpc_request)
    reply = await state["planner"].call(route.rpc, rpc_request, metadata)
    return _reply(route, request, reply)


def _reply(route: RestRoute, request: EdgeRequest, reply: message.Message) -> Response:
    body = codec.message_json(reply)
    headers: dict[str, str] = {}
    if isinstance(reply, jobs_pb2.Job):
        if reply.state in _UNFINISHED:
            headers["Retry-After"] = "1"
        if route.rpc == "CreateJob":
            get_job = request.state["routes"].by_rpc["GetJob"]
            headers["Location"] = expand(get_job.template, {"name": reply.name})
    if route.method == "GET":
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        headers["ETag"] = etag
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
    return Response(body, route.status, headers, media_type="application/json")


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x".
    tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    return "*" in tags or etag in tags


async def _body(request: EdgeRequest) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise InvalidArgument(
                f"request body exceeds {MAX_BODY_BYTES} bytes", reason="BODY_TOO_LARGE"
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _watch(route: RestRoute, request: EdgeRequest, metadata: Metadata) -> Response:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    watch = build_request(route, request.path_params, query, b"")
    if not isinstance(watch, jobs_pb2.WatchJobRequest):
        raise TypeError(f"{route.rpc} is not WatchJob; no SSE translation for it")
    # EventSource reconnects with the original URL plus Last-Event-ID, the newer cursor.
    cursor = request.headers.get("last-event-id") or request.query_params.get("after")
    if cursor:
        watch.after_cursor = cursor
    validate(watch)
    state = request.state
    upstream = Upstream(state["planner"].watch(watch, metadata))
    try:
        # Waiting for the first event lets an early failure still answer with its HTTP status.
        wait = min(state["heartbeat_seconds"], FIRST_EVENT_WAIT_SECONDS)
        first = await upstream.next(wait)
    except grpc.RpcError as exc:
        upstream.cancel()
        raise upstream_error(exc) from exc
    except BaseException:
        upstream.cancel()
        raise
    return EventStream(upstream, first, state["heartbeat_seconds"], state["draining"])
