"""Every parser of client input at the edge is total: for any input it returns a valid value
or raises one of the edge's errors with a 4xx status, never another exception.

Beside totality, each parser keeps its promise on the values it accepts (a cursor in
Valkey's range, a wait within the cap, a depth that is the real depth, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.settings import Secret
from switchboard.common.validation import validate
from switchboard.edge import bodies, codec, headers, wait
from switchboard.edge.auth import CLIENT_SCOPE_KEY, ApiKeys, bearer_key
from switchboard.edge.config import Settings
from switchboard.edge.errors import http_status
from switchboard.edge.handlers import _etag_matches
from switchboard.edge.openai import endpoints as openai
from switchboard.edge.openai import requests as openai_requests
from switchboard.edge.openai.websocket import _frame, _id
from switchboard.edge.routes import build_request, job_routes
from switchboard.edge.tokens import StreamTokens

from .conftest import StandInPlanner, job

T = TypeVar("T")
PROPERTIES = settings(max_examples=300, deadline=None, database=None, derandomize=True)
UINT64 = 2**64 - 1
# settings_for leaves MAX_WAIT_SECONDS at its default.
WAIT_CAP = Settings.max_wait_seconds

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
# What a header value can be: Starlette decodes header bytes as latin-1.
header_values = st.binary(max_size=80).map(lambda b: b.decode("latin-1")) | st.sampled_from(
    ["9" * 5000, "\xb2", "wait=" + "9" * 5000, f"{2**64}-0", f"{UINT64}-{UINT64}"]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
raw_bodies = st.binary(max_size=120) | json_values.map(lambda v: json.dumps(v).encode())


def total(parse: Callable[..., T], *args: Any) -> T | None:
    """What `parse` returns; None when it refused with a 4xx of ours. Anything else fails."""
    try:
        return parse(*args)
    except SwitchboardError as exc:
        status, _ = http_status(exc)
        assert 400 <= status < 500, (exc.reason, status, exc.message)
        return None


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@PROPERTIES
@given(raw_bodies)
def test_load_json_is_total(raw: bytes) -> None:
    total(bodies.load_json, raw)


@PROPERTIES
@given(json_values, st.sampled_from(["utf-16", "utf-16-le", "utf-32-be", "utf-8-sig"]))
def test_json_in_another_encoding_is_refused_as_not_utf8(value: Any, encoding: str) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode(encoding)
    try:
        bodies.load_json(raw)
    except SwitchboardError as exc:
        assert exc.reason == "BODY_NOT_UTF8"
    else:
        raise AssertionError(f"{raw!r} was read as JSON")


@PROPERTIES
@given(json_values)
def test_the_depth_scan_measures_what_json_loads_reads(value: Any) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert bodies.json_depth(raw) == depth(value)
    assert bodies.load_json(raw) == value


@PROPERTIES
@given(st.text(st.sampled_from('[]{}"\\ax'), max_size=200))
def test_the_depth_scan_never_undercounts_brackets_outside_strings(text: str) -> None:
    raw = text.encode()
    # Every string the scan removes holds brackets json.loads would not count either, so
    # whatever it leaves bounds the real nesting; json.loads must never recurse past it.
    value = total(bodies.load_json, raw)
    if value is not None:
        assert depth(value) <= bodies.json_depth(raw)


@PROPERTIES
@given(header_values)
def test_declared_length_is_bounded(text: str) -> None:
    length = bodies.declared_length(text)
    assert -1 <= length <= 10**12
    digits = text.lstrip("0") or "0"
    if digits.isascii() and digits.isdigit():
        assert length == (int(digits) if len(digits) <= 12 else 10**12)


@PROPERTIES
@given(st.integers(0, 2**70), st.integers(0, 2**70))
def test_a_cursor_is_accepted_exactly_in_valkeys_range(ms: int, seq: int) -> None:
    cursor = f"{ms}-{seq}"
    accepted = total(headers.event_cursor, cursor)
    assert (accepted == cursor) == (ms <= UINT64 and seq <= UINT64)


@PROPERTIES
@given(header_values | texts)
def test_event_cursor_is_total(text: str) -> None:
    cursor = total(headers.event_cursor, text)
    if cursor:
        ms, seq = map(int, cursor.split("-"))
        assert 0 <= ms <= UINT64 and 0 <= seq <= UINT64


@PROPERTIES
@given(header_values | texts)
def test_delta_seconds_is_total_and_bounded(text: str) -> None:
    seconds = headers.delta_seconds(text)
    assert seconds is None or 0 <= seconds <= 10**9


@PROPERTIES
@given(st.lists(header_values, max_size=3), st.floats(0, 60))
def test_preferred_wait_is_total_and_capped(prefer: list[str], cap: float) -> None:
    seconds = wait.preferred_wait(prefer, cap)
    assert seconds is None or 1 <= seconds <= cap


@PROPERTIES
@given(raw_bodies)
def test_parse_body_is_total(raw: bytes) -> None:
    total(codec.parse_body, raw, jobs_pb2.CreateJobRequest().job)


@PROPERTIES
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["pageSize", "page_size", "pageToken", "afterCursor", "name"]) | texts,
            header_values | texts,
        ),
        max_size=4,
    ),
    st.sampled_from([jobs_pb2.ListJobsRequest, jobs_pb2.WatchJobRequest, jobs_pb2.GetJobRequest]),
)
def test_parse_query_is_total(items: list[tuple[str, str]], kind: type[Any]) -> None:
    total(codec.parse_query, items, kind())


@PROPERTIES
@given(
    st.sampled_from(job_routes().routes),
    texts,
    st.lists(st.tuples(texts, texts), max_size=3),
    raw_bodies,
)
def test_every_route_builds_a_request_or_refuses(
    route: Any, job_id: str, query: list[tuple[str, str]], body: bytes
) -> None:
    params = {name: job_id for name in route.path_params}
    built = total(build_request, route, params, query, body)
    if built is not None:
        total(validate, built)


@PROPERTIES
@given(header_values)
def test_api_key_headers_are_total(authorization: str) -> None:
    keys = ApiKeys.parse(Secret("sb-key=tester"))
    total(bearer_key, authorization)
    assert total(keys.client_id, authorization) in (None, "tester")


@PROPERTIES
@given(header_values | texts, texts)
def test_stream_tokens_are_total(token: str, job: str) -> None:
    tokens = StreamTokens(b"k" * 32)
    assert total(tokens.verify, token, "jobs/j-1") is None  # nothing forged passes
    issued = tokens.issue("tester", f"jobs/{job}")
    assert tokens.verify(issued, f"jobs/{job}") == "tester"


@PROPERTIES
@given(header_values, texts)
def test_session_ids_and_users_are_total(session: str, user: str) -> None:
    scope = {CLIENT_SCOPE_KEY: "tester"}
    caller = total(openai.caller, scope, {"x-session-id": session})
    if caller is not None:
        assert caller.session == "" or openai_requests.is_token(caller.session)
    key = openai.session_key(user)
    assert key == "" or openai_requests.is_token(key)


@PROPERTIES
@given(header_values)
def test_if_none_match_is_total(value: str) -> None:
    assert _etag_matches(value, '"abc"') in (True, False)


chat_like = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values,
        "messages": st.lists(
            st.fixed_dictionaries({}, optional={"role": json_values, "content": json_values}),
            max_size=3,
        )
        | json_values,
        "temperature": json_values | st.just(10**400),
        "top_p": json_values,
        "max_tokens": json_values,
        "max_completion_tokens": json_values,
        "seed": json_values,
        "stop": json_values,
        "stream": json_values,
        "stream_options": json_values,
        "n": json_values,
        "logprobs": json_values,
        "response_format": json_values,
        "user": json_values,
        "input": json_values,
        "encoding_format": json_values,
        "dimensions": json_values,
    },
)


@PROPERTIES
@given(chat_like)
def test_openai_requests_are_total(body: dict[str, Any]) -> None:
    chat = total(openai_requests.parse_chat, body)
    if chat is not None:
        total(validate, pb.GenerateRequest(request_id="r-1", start=chat.start))
    embeddings = total(openai_requests.parse_embeddings, body)
    if embeddings is not None:
        total(validate, embeddings.embed)


@PROPERTIES
@given(raw_bodies | texts)
def test_socket_frames_are_total(raw: bytes | str) -> None:
    frame = total(_frame, raw)
    if frame is not None:
        total(_id, frame)


# The red team's three classes of 500, over the wire (uvicorn, the stand-in planner).


@pytest.mark.asyncio
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-32-be"])
async def test_deep_json_in_another_encoding_is_400_not_utf8(
    client: httpx.AsyncClient, planner: StandInPlanner, encoding: str
) -> None:
    deep = '["\u2200", ' + "[" * 5000 + "]" * 5000 + ', "x"]'
    answer = await client.post("/v1/jobs", content=deep.encode(encoding))
    assert answer.status_code == 400
    assert answer.json()["error"]["details"][0]["reason"] == "BODY_NOT_UTF8"
    assert planner.rpcs() == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("header", "param"),
    [(f"{2**64}-0", ""), (f"0-{2**64}", ""), ("", f"{2**64}-1"), ("1-" + "9" * 5000, "")],
)
async def test_a_cursor_past_valkeys_range_is_400_invalid_cursor(
    client: httpx.AsyncClient, planner: StandInPlanner, header: str, param: str
) -> None:
    planner.jobs["jobs/job-1"] = job("job-1", jobs_pb2.Job.RUNNING)
    answer = await client.get(
        "/v1/jobs/job-1/events",
        headers={"Last-Event-ID": header} if header else {},
        params={"lastEventId": param} if param else {},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["details"][0]["reason"] == "INVALID_CURSOR"
    assert "WatchJob" not in planner.rpcs()


@pytest.mark.asyncio
async def test_a_wait_of_thousands_of_digits_is_the_longest_wait(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    body = {"pipeline": "generate", "input": {"generate": {"model": "m", "prompt": "hi"}}}
    answer = await client.post(
        "/v1/jobs?job_id=wait-1", json=body, headers={"Prefer": "wait=" + "9" * 5000}
    )
    assert answer.status_code in (200, 202)
    assert answer.headers["preference-applied"] == f"wait={int(WAIT_CAP)}"
