"""REST endpoints: HTTP request -> validated request message -> planner -> HTTP answer.

One generic endpoint serves every derived route; what differs per RPC is data on the
route (verb, body field, streaming, 200/202). A bad request never leaves the edge.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from google.protobuf import message
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common import jobview, telemetry
from switchboard.common.callmetadata import Metadata, call_metadata
from switchboard.common.errors import SwitchboardError
from switchboard.common.hashkeys import JOB_ID_HEADER
from switchboard.common.jobref import JobRef
from switchboard.common.validation import validate

from . import bodies, codec
from .auth import ApiKeys, authenticated_client
from .errors import MethodNotAllowed, error_response, internal_error
from .headers import event_cursor
from .hub import Hub
from .planner import Planner
from .routes import RestRoute, RouteTable, build_request, expand
from .sse import HEADERS as SSE_HEADERS
from .sse import EventStream, Tick
from .state import EdgeState
from .tokens import QUERY_PARAMETER as TOKEN_PARAMETER
from .tokens import StreamTokens
from .wait import preferred_wait, until_finished

log = logging.getLogger(__name__)

# Long enough for the planner to reject a watch; short enough that headers go out promptly.
FIRST_EVENT_WAIT_SECONDS: Final = 1.0
_UNFINISHED: Final = frozenset({jobs_pb2.Job.QUEUED, jobs_pb2.Job.RUNNING, jobs_pb2.Job.CANCELLING})
# Query parameters of the event stream that are not WatchJobRequest fields: cursors for
# clients that cannot set Last-Event-ID (`lastEventId`, and the older `after`), the token.
_WATCH_EXTRAS: Final = frozenset({"after", "lastEventId", TOKEN_PARAMETER})
# Per client (API keys), and always revalidated: the ETag makes that cheap.
CACHE_CONTROL: Final = "private, no-cache"


class JobApiState(EdgeState):
    """EdgeState plus the planner channel and what the job routes keep per edge."""

    planner: Planner
    keys: ApiKeys
    routes: RouteTable
    heartbeat_seconds: float
    hub: Hub
    tokens: StreamTokens
    max_wait_seconds: float
    sse_max_seconds: float


EdgeRequest = Request[JobApiState]
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
    client = authenticated_client(request.scope)
    job_id = request.path_params.get("job_id", "")
    # Each request runs in its own task, so these die with it; no reset needed.
    telemetry.client_id_var.set(client)
    telemetry.job_id_var.set(job_id)
    metadata = call_metadata(client, job_id=job_id)
    if route.streaming:
        return await _watch(route, request, client, metadata)
    body = b""
    if route.body:
        body = await bodies.read_body(request)
        bodies.check_depth(body)
    query = request.query_params.multi_items()
    rpc_request = build_request(route, request.path_params, query, body)
    if isinstance(rpc_request, jobs_pb2.CreateJobRequest):
        return await _create(route, request, rpc_request, client, metadata)
    validate(rpc_request)
    reply = await state["planner"].call(route.rpc, rpc_request, metadata)
    return _reply(route, request, reply)


async def _create(
    route: RestRoute,
    request: EdgeRequest,
    create: jobs_pb2.CreateJobRequest,
    client: str,
    metadata: Metadata,
) -> Response:
    """CreateJob, with Idempotency-Key and `Prefer: wait=N`: 200 with the job when it ended
    within N seconds, else 202 as without the preference."""
    state = request.state
    if key := request.headers.get("idempotency-key"):
        # The IETF draft sends the key as a structured-field string, quoted.
        create.idempotency_key = key.strip().removeprefix('"').removesuffix('"')
    validate(create)
    job = await state["planner"].call(route.rpc, create, metadata)
    if not isinstance(job, jobs_pb2.Job):
        raise TypeError(f"{route.rpc} answered {type(job).__name__}, not a Job")
    headers = {"Link": _events_link(request, client, job.name)}
    wait = preferred_wait(request.headers.getlist("prefer"), state["max_wait_seconds"])
    if wait is None:
        return _reply(route, request, job, headers=headers)
    headers["Preference-Applied"] = f"wait={wait}"
    if job.state in _UNFINISHED:
        # From here on the calls name the job, so Envoy can hash them to its planner.
        named = (*metadata, (JOB_ID_HEADER, JobRef.from_name(client, job.name).id))
        ending = await until_finished(state["hub"], client, job.name, named, wait)
        if ending.finished:
            ended = jobview.succeeded_view(job, ending.events)
            job = ended or await _finished_job(state["planner"], job, named)
    status = route.status if job.state in _UNFINISHED else 200
    return _reply(route, request, job, status=status, headers=headers)


async def _finished_job(
    planner: Planner, created: jobs_pb2.Job, metadata: Metadata
) -> jobs_pb2.Job:
    """The job as it ended; the job as created (so a 202) if reading it fails: it exists
    either way, and the client can follow it from the Location."""
    try:
        found = await planner.call("GetJob", jobs_pb2.GetJobRequest(name=created.name), metadata)
    except SwitchboardError as exc:
        log.warning("reading the waited-for job failed", extra={"fields": {"reason": exc.reason}})
        return created
    return found if isinstance(found, jobs_pb2.Job) else created


def _events_link(request: EdgeRequest, client: str, job: str) -> str:
    """The job's event stream with a stream token, ready for a browser's EventSource."""
    watch = request.state["routes"].by_rpc["WatchJob"]
    token = request.state["tokens"].issue(client, job)
    return f'<{expand(watch.template, {"name": job})}?{TOKEN_PARAMETER}={token}>; rel="events"'


def _reply(
    route: RestRoute,
    request: EdgeRequest,
    reply: message.Message,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = codec.message_json(reply)
    answer = dict(headers or {})
    if isinstance(reply, jobs_pb2.Job):
        if reply.state in _UNFINISHED:
            answer["Retry-After"] = "1"
        if route.rpc == "CreateJob":
            get_job = request.state["routes"].by_rpc["GetJob"]
            answer["Location"] = expand(get_job.template, {"name": reply.name})
    if route.method == "GET":
        etag = f'"{hashlib.sha256(body).hexdigest()}"'
        answer["ETag"] = etag
        answer["Cache-Control"] = CACHE_CONTROL
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=answer)
    return Response(body, status or route.status, answer, media_type="application/json")


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    # If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" matches "x".
    tags = {t.strip().removeprefix("W/") for t in (if_none_match or "").split(",")}
    return "*" in tags or etag in tags


async def _watch(
    route: RestRoute, request: EdgeRequest, client: str, metadata: Metadata
) -> Response:
    params = request.query_params
    query = [(k, v) for k, v in params.multi_items() if k not in _WATCH_EXTRAS]
    watch = build_request(route, request.path_params, query, b"")
    if not isinstance(watch, jobs_pb2.WatchJobRequest):
        raise TypeError(f"{route.rpc} is not WatchJob; no SSE translation for it")
    # EventSource reconnects with the original URL plus Last-Event-ID, the newer cursor.
    cursor = (
        request.headers.get("last-event-id") or params.get("lastEventId") or params.get("after")
    )
    if cursor:
        watch.after_cursor = cursor
    # The planner hands the cursor to Valkey, which must never see one out of its range.
    event_cursor(watch.after_cursor)
    validate(watch)
    state = request.state
    slot = await state["streams"].acquire(client)
    try:
        subscription = state["hub"].subscribe(client, watch.name, watch.after_cursor, metadata)
    except BaseException:
        slot.release()
        raise
    try:
        # Waiting for the first event lets an early failure still answer with its HTTP status.
        first = await subscription.next(min(state["heartbeat_seconds"], FIRST_EVENT_WAIT_SECONDS))
    except BaseException:
        subscription.close(client_left=False)
        slot.release()
        raise
    if first is Tick.END:
        subscription.close(client_left=False)
        slot.release()
        # Nothing after the cursor and the job is over: 204 stops EventSource reconnecting.
        return Response(status_code=204, headers=SSE_HEADERS)
    return EventStream(
        subscription,
        first,
        state["heartbeat_seconds"],
        state["draining"],
        state["sse_max_seconds"],
        on_close=slot.release,
    )
