"""The public REST API as the CLI uses it: the key on every request, the Google error body
turned into one exception, and a job's events read as SSE and resumed with Last-Event-ID
after a dropped connection or an ended response until the job's terminal event."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from switchboard.common.jobstates import TERMINAL_STATE_NAMES
from switchboard.launcher.ports import DEFAULT_BASE, Ports

# The development key `switchboard up` configures (client `dev`).
DEV_API_KEY: Final = "sb-dev-key"
# Reconnects in a row, without an event between them, before a watch gives up.
MAX_RESUMES: Final = 8
TIMEOUT: Final = httpx.Timeout(30.0, read=None)  # an SSE read waits as long as the job

JsonObject = dict[str, Any]


class ApiError(Exception):
    """A refused request: the HTTP status and the Google error body's reason and message."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None) -> None:
        super().__init__(f"{reason}: {message}" if reason else message)
        self.status, self.reason, self.message = status, reason, message
        self.retry_after = retry_after


def connection_options() -> argparse.ArgumentParser:
    """--url, --api-key and --base-port, for every command that calls the public API."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--url",
        default=os.environ.get("SWITCHBOARD_URL"),
        help="the public API (env SWITCHBOARD_URL; default: the local stack on --base-port)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        default=int(os.environ.get("SWITCHBOARD_BASE_PORT", DEFAULT_BASE)),
        help="the local stack to call without --url (env SWITCHBOARD_BASE_PORT)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SWITCHBOARD_API_KEY", DEV_API_KEY),
        help=f"API key (env SWITCHBOARD_API_KEY; default: the local stack's {DEV_API_KEY})",
    )
    return parser


def base_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    return f"http://127.0.0.1:{Ports.at(args.base_port).public}"


@dataclass
class Api:
    http: httpx.Client

    @classmethod
    def connect(cls, args: argparse.Namespace) -> Api:
        headers = {"Authorization": f"Bearer {args.api_key}"}
        return cls(httpx.Client(base_url=base_url(args), headers=headers, timeout=TIMEOUT))

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        body: JsonObject | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> JsonObject:
        response = self.http.request(method, path, json=body, params=params, headers=headers)
        if response.is_error:
            raise api_error(response)
        answer = response.json()
        return answer if isinstance(answer, dict) else {"value": answer}

    def events(self, job_id: str, after: str = "") -> Iterator[ServerSentEvent]:
        """The job's events after `after`, ending after its terminal state change; a response
        that ends early or breaks is resumed from the last event id it delivered."""
        cursor, failures, reached = after, 0, False
        while True:
            asked: float | None = None  # the server's Retry-After, when it gave one
            headers = {"Last-Event-ID": cursor} if cursor else {}
            path = f"/v1/jobs/{job_id}/events"
            try:
                with connect_sse(self.http, "GET", path, headers=headers) as source:
                    if source.response.is_error:
                        source.response.read()
                        raise api_error(source.response)
                    reached = True
                    for event in source.iter_sse():
                        if not event.data:  # the `retry:` frame: no event
                            continue
                        failures = 0
                        cursor = event.id or cursor
                        yield event
                        if event.event == "error" or is_terminal(event):
                            return
            except httpx.TransportError:
                failures += 1
                if not reached or failures > MAX_RESUMES:
                    raise  # never reached at all, or it keeps breaking
            except ApiError as refused:  # a cap on streams: wait as asked, then again
                failures += 1
                if refused.retry_after is None or failures > MAX_RESUMES:
                    raise
                asked = refused.retry_after
            else:  # the response ended before the job did (the edge's stream lifetime)
                failures += 1
                if failures > MAX_RESUMES:
                    raise ApiError(0, "UNAVAILABLE", "the event stream keeps ending early", None)
            time.sleep(asked if asked is not None else min(0.25 * 2 ** (failures - 1), 5.0))


def is_terminal(event: ServerSentEvent) -> bool:
    if event.event != "state_changed":
        return False
    return str(payload(event).get("state", "")) in TERMINAL_STATE_NAMES


def payload(event: ServerSentEvent) -> JsonObject:
    """The event's payload object (`token`, `progress`, ...) from its JobEvent JSON."""
    data = event_json(event)
    inner = data.get(snake_to_camel(event.event), data.get(event.event, {}))
    return inner if isinstance(inner, dict) else {}


def event_json(event: ServerSentEvent) -> JsonObject:
    try:
        data = json.loads(event.data)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json().get("error", {})
    except (json.JSONDecodeError, AttributeError):
        error = {}
    reason = ""
    for detail in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(detail, dict) and detail.get("reason"):
            reason = str(detail["reason"])
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    retry_after = response.headers.get("Retry-After")
    wait = float(retry_after) if retry_after and retry_after.isdigit() else None
    return ApiError(response.status_code, reason, message or response.reason_phrase, wait)
