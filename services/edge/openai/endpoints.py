"""The OpenAI-compatible interactive API: chat completions, embeddings and models, served
straight from the inference service (no job, no Temporal) with OpenAI's error shape.

A chat completion is one Generate stream of one generation, whose request id is the
completion id. A client that leaves before the end gets its generation cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.callmetadata import Metadata, call_metadata
from switchboard.common.errors import Cancelled, SwitchboardError
from switchboard.common.hashkeys import SESSION_ID_HEADER
from switchboard.common.validation import validate

from .. import bodies, errors
from ..auth import authenticated_client
from ..errors import MalformedRequest, ModelNotFound, http_status, internal_error
from ..state import EdgeState
from . import requests, wire
from .chat_stream import ChatStream, Completion
from .inference import GenerateStream, Inference

log = logging.getLogger(__name__)

# How long a streamed completion waits for its first event before the headers go out:
# a refusal (unknown model, bad input) still gets its own HTTP status.
FIRST_EVENT_WAIT_SECONDS: Final = 1.0
OPENAI_PREFIXES: Final = ("/v1/chat/", "/v1/embeddings", "/v1/models")
OPENAI_STATUS: Final = {"MODEL_TASK_MISMATCH": 404}


class InteractiveState(EdgeState):
    """EdgeState plus the inference channel the interactive routes use."""

    inference: Inference


InteractiveRequest = Request[InteractiveState]


@dataclass(frozen=True)
class Caller:
    client: str
    session: str

    def metadata(self, user: str = "") -> Metadata:
        """x-client-id, and x-session-id (Envoy's consistent-hash key for the inference service)."""
        session = self.session or session_key(user)
        return call_metadata(self.client, session_id=session)


def openai_routes() -> list[Route]:
    return [
        Route("/v1/chat/completions", _endpoint(_chat), methods=["POST"]),
        Route("/v1/embeddings", _endpoint(_embeddings), methods=["POST"]),
        Route("/v1/models", _endpoint(_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", _endpoint(_model), methods=["GET"]),
    ]


def caller(scope: MutableMapping[str, Any], headers: Mapping[str, str]) -> Caller:
    """The client the Admission middleware authenticated, and the session the caller named."""
    client = authenticated_client(scope)
    session = headers.get(SESSION_ID_HEADER, "")
    if session and not requests.is_token(session):
        raise requests.invalid("X-Session-Id", "must be 1-128 printable ASCII characters")
    return Caller(client, session)


def session_key(user: str) -> str:
    """A session key from OpenAI's `user`: as given when it fits in a header, else hashed."""
    if not user:
        return ""
    return user if requests.is_token(user) else requests.hashed(user)


def error_response(error: SwitchboardError, headers: Mapping[str, str] | None = None) -> Response:
    status, extra = http_status(error)
    # OpenAI answers a model of the wrong kind ("not a chat model") with 404, as unknown.
    status = OPENAI_STATUS.get(error.reason, status)
    if (wait := wire.retry_after(error)) is not None:
        extra["Retry-After"] = wait
    return JSONResponse(wire.error_object(error, status), status, {**extra, **(headers or {})})


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIXES)


def refusal(scope: Scope, error: SwitchboardError, headers: Mapping[str, str]) -> Response:
    """A refusal before routing (no key, rate limited, no such route) in the shape of the
    API the path belongs to: OpenAI's on its routes, Google's elsewhere."""
    if is_openai_path(scope["path"]):
        return error_response(error, headers)
    return errors.error_response(error, headers)


Handler = Callable[[InteractiveRequest, Caller], Awaitable[Response]]


def _endpoint(handle: Handler) -> Callable[[InteractiveRequest], Awaitable[Response]]:
    async def endpoint(request: InteractiveRequest) -> Response:
        try:
            return await handle(request, caller(request.scope, request.headers))
        except SwitchboardError as exc:
            fields = {"path": request.url.path, "reason": exc.reason, "code": exc.code.name}
            log.info("request failed", extra={"fields": fields})
            return error_response(exc)
        except Exception:  # the one place an interactive request's failure becomes HTTP
            log.exception("unexpected error", extra={"fields": {"path": request.url.path}})
            return error_response(internal_error())

    return endpoint


async def _chat(request: InteractiveRequest, who: Caller) -> Response:
    chat = requests.parse_chat(await read_json(request))
    completion = Completion(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), chat)
    validate(pb.GenerateRequest(request_id=completion.id, start=chat.start))
    # A streamed completion holds one of the client's stream slots while it lasts.
    slot = await request.state["streams"].acquire(who.client) if chat.stream else None
    release = slot.release if slot else None
    stream = request.state["inference"].generate(who.metadata(chat.user))
    try:
        stream.start(completion.id, chat.start)
        if chat.stream:
            first = await _first(stream, FIRST_EVENT_WAIT_SECONDS)
            return ChatStream(stream, completion, first, request.state["draining"], release)
        return await _whole(stream, completion, request.receive)
    except BaseException:
        if release is not None:
            release()
        await stream.close([completion.id])
        raise


async def _first(stream: GenerateStream, wait: float) -> pb.GenerateResponse | None:
    """The first event if it comes within `wait`; a refusal is raised as our error."""
    try:
        async with asyncio.timeout(wait):  # not wait_for, which may swallow a cancel
            first = await stream.next()
    except TimeoutError:
        return None
    if first is not None and first.HasField("error"):
        raise SwitchboardError.from_status(first.error)
    return first


async def _whole(stream: GenerateStream, completion: Completion, receive: Receive) -> Response:
    """A non-streamed completion; the generation is cancelled if the client leaves first."""
    collect = asyncio.ensure_future(completion.collect(stream))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (collect, gone):
            task.cancel()
        await asyncio.gather(collect, gone, return_exceptions=True)
    if collect.cancelled():
        # Nobody reads this answer; the caller's close cancels the generation.
        raise Cancelled("the client closed the request before the completion")
    body = collect.result()  # raises the generation's error
    await stream.close()
    return JSONResponse(body)


async def _embeddings(request: InteractiveRequest, who: Caller) -> Response:
    ask = requests.parse_embeddings(await read_json(request))
    validate(ask.embed)
    reply = await request.state["inference"].embed(ask.embed, who.metadata(ask.user))
    return JSONResponse(wire.embeddings(reply, ask.encoding))


async def _models(request: InteractiveRequest, who: Caller) -> Response:
    reply = await request.state["inference"].list_models(who.metadata())
    data = [wire.model_entry(name) for name in wire.model_names(reply)]
    return JSONResponse({"object": "list", "data": data})


async def _model(request: InteractiveRequest, who: Caller) -> Response:
    model_id = request.path_params["model_id"]
    reply = await request.state["inference"].list_models(who.metadata())
    if model_id not in wire.model_names(reply):
        raise ModelNotFound(f"unknown model {model_id!r}", metadata={"model": model_id})
    return JSONResponse(wire.model_entry(model_id))


async def read_json(request: Request[Any]) -> dict[str, Any]:
    """The body as a JSON object; MalformedRequest when it is not one."""
    return json_object(await bodies.read_body(request), "request body")


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    value = bodies.load_json(raw, what)
    if not isinstance(value, dict):
        raise MalformedRequest(f"{what} must be a JSON object")
    return value


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
