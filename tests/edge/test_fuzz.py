"""Fuzz: arbitrary methods, paths, query strings, headers and bodies sent to every route of
the edge (in-process at the ASGI level, stand-in planner and inference behind it) never get
a 5xx, and nothing escapes the app. Frames on the chat socket never get a server error.

Inputs lean towards what reaches the parsers: a valid API key most of the time, the edge's
own header and parameter names, JSON in other encodings, deep nesting, numbers of thousands
of digits, cursors at and past 2**64.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2

from .asgi import Answer, Harness, harness
from .conftest import API_KEY, job

# The app's thread draws span ids from `random` while Hypothesis draws the next example;
# that is no strategy of ours using it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
EXAMPLES = 1000
SOCKET_EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
JOB = "fuzz-1"
PATHS = [
    "/v1/jobs",
    f"/v1/jobs/{JOB}",
    f"/v1/jobs/{JOB}/events",
    f"/v1/jobs/{JOB}/result",
    f"/v1/jobs/{JOB}/cancel",
    "/v1/pipelines",
    "/v1/sessions/s1",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/models/echo",
    "/v1/chat/ws",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
]
METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"]
HEADER_NAMES = [
    "authorization", "content-type", "content-length", "prefer", "idempotency-key",
    "last-event-id", "if-none-match", "x-session-id", "accept", "accept-encoding",
    "traceparent", "tracestate", "origin", "cookie", "transfer-encoding", "host",
]  # fmt: skip
PARAMS = [
    "lastEventId", "after", "token", "pageSize", "page_size", "pageToken", "job_id", "jobId",
    "afterCursor", "after_cursor", "name", "pipeline",
]  # fmt: skip
# Header values that broke (or could break) a parser: out of range, too long, not ASCII.
HOSTILE = [
    (name.encode(), value.encode("latin-1"))
    for name, value in [
        ("prefer", "wait=" + "9" * 4400),
        ("prefer", "wait=\xb2"),
        ("prefer", 'respond-async, wait="7"; x=y, wait=1'),
        ("last-event-id", f"{2**64}-0"),
        ("last-event-id", f"0-{2**64}"),
        ("last-event-id", f"{2**64 - 1}-{2**64 - 1}"),
        ("last-event-id", "1-" + "9" * 5000),
        ("last-event-id", "\xb9-\xb2"),
        ("idempotency-key", '""'),
        ("idempotency-key", "\xe9" * 300),
        ("idempotency-key", "k" * 5000),
        ("content-length", "\xb2"),
        ("content-length", "9" * 5000),
        ("content-length", "-1"),
        ("x-session-id", "\xe9t\xe9"),
        ("x-session-id", "s" * 500),
        ("authorization", "Bearer " + "k" * 10000),
        ("authorization", "Bearer \xff\xfe"),
        ("authorization", "Basic dXNlcjpwYXNz"),
        ("content-type", "application/json; charset=utf-16"),
        ("content-type", 'multipart/form-data; boundary="'),
        ("accept", "text/event-stream;q=" + "9" * 5000),
        ("if-none-match", "W/" * 2000),
        ("traceparent", "00-" + "f" * 32 + "-" + "f" * 16 + "-" + "9" * 5000),
    ]
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"]

# Text without lone surrogates: no server decodes a request into those.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
digit_runs = st.integers(1, 5000).map(lambda n: "9" * n)
cursors = st.one_of(
    st.tuples(st.integers(0, 2**65), st.integers(0, 2**65)).map(lambda p: f"{p[0]}-{p[1]}"),
    digit_runs.map(lambda d: f"{d}-0"),
    texts,
)
values = st.one_of(
    texts,
    digit_runs,
    cursors,
    st.sampled_from(["wait=5", "wait=0", "wait=²", "wait=" + "9" * 4400, 'W/"x", *']),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
chat_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["echo", "default-chat", "nope", ""]) | texts,
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]) | texts,
                                   "content": json_values}),
            max_size=3,
        ) | json_values,
    },
    optional={
        "stream": st.booleans() | json_values,
        "temperature": json_values | st.just(10**400),
        "max_tokens": json_values,
        "seed": json_values,
        "user": texts,
        "input": json_values,
        "stop": json_values,
    },
)  # fmt: skip
job_bodies = st.fixed_dictionaries(
    {"pipeline": st.sampled_from(["generate", "embed"]) | texts},
    optional={"input": json_values, "labels": json_values, "webhookUrl": json_values},
)


def _encoded(value: Any, encoding: str) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode(encoding, errors="surrogatepass")


bodies = st.one_of(
    st.binary(max_size=200),
    st.tuples(chat_bodies | job_bodies | json_values, st.sampled_from(ENCODINGS)).map(
        lambda p: _encoded(*p)
    ),
    st.integers(30, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(30, 3000).map(lambda n: ("[" * n + "]" * n).encode("utf-16")),
    st.sampled_from([b'{"a": 1e400}', b'{"a": NaN}', b'{"a": "\\ud800"}', b"1" * 5000]),
)


# Requests that pass every check, so a mutation of one part reaches the parsers behind.
VALID_JOB = {
    "pipeline": "generate",
    "input": {"generate": {"model": "test-streamer", "prompt": "hi"}},
}
VALID_CHAT = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
TEMPLATES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/jobs", VALID_JOB),
    ("GET", "/v1/jobs", None),
    ("GET", f"/v1/jobs/{JOB}", None),
    ("GET", f"/v1/jobs/{JOB}/events", None),
    ("GET", f"/v1/jobs/{JOB}/result", None),
    ("POST", f"/v1/jobs/{JOB}/cancel", None),
    ("POST", "/v1/chat/completions", VALID_CHAT),
    ("POST", "/v1/chat/completions", {**VALID_CHAT, "stream": True}),
    ("POST", "/v1/embeddings", {"model": "echo-embed", "input": "hi"}),
    ("GET", "/v1/models", None),
]
# JSON whose UTF-16 or UTF-32 code units hold quote bytes: a byte scan sees a string where
# there is none, and the brackets after it vanish from its count.
smuggled = st.builds(
    lambda chars, depth, encoding: (
        '["' + chars + '", ' + "[" * depth + "]" * depth + ', "x"]'
    ).encode(encoding),
    st.text("\u2200\u2222\u225b\u5b22a", min_size=1, max_size=3),
    st.integers(100, 3000),
    st.sampled_from(ENCODINGS[2:]),
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """A valid request of a template, with its method, path or body (or none) replaced."""
    method, path, valid = draw(st.sampled_from(TEMPLATES))
    body = b"" if valid is None else json.dumps(valid).encode()
    part = draw(st.sampled_from(["none", "method", "path", "segment", "body", "body"]))
    if part == "method":
        method = draw(st.sampled_from(METHODS))
    elif part == "path":
        path = draw(st.sampled_from(PATHS))
    elif part == "segment":
        # Any text in the place of the job id (or another segment).
        segment = draw(texts.filter(lambda t: "/" not in t and t not in ("", ".", "..")))
        path = path.replace(JOB, segment) if JOB in path else f"{path}/{segment}"
    elif part == "body":
        body = draw(bodies | smuggled)
    return method, path, body


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=80))
    pairs = draw(st.lists(st.tuples(st.sampled_from(PARAMS) | texts, values), max_size=4))
    return urlencode(pairs, errors="surrogatepass").encode("ascii")


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    found: list[tuple[bytes, bytes]] = []
    if draw(st.integers(0, 9)) > 0:
        found.append((b"authorization", f"Bearer {API_KEY}".encode()))
    extra = st.tuples(
        st.sampled_from(HEADER_NAMES).map(str.encode) | st.binary(min_size=1, max_size=20),
        values.map(lambda v: v.encode("utf-8", errors="surrogatepass")) | st.binary(max_size=60),
    )
    found.extend(draw(st.lists(st.sampled_from(HOSTILE) | extra, max_size=5)))
    return found


@pytest.fixture(scope="module")
def edge() -> Iterator[Harness]:
    with harness() as running:
        running.planner.jobs[f"jobs/{JOB}"] = job(JOB, jobs_pb2.Job.RUNNING)
        running.planner.events = [
            events_pb2.JobEvent(
                cursor=f"1-{n}", job=f"jobs/{JOB}", token=events_pb2.TokenDelta(text="t", index=n)
            )
            for n in range(3)
        ]
        yield running


def _explain(answer: Answer) -> str:
    trace = "".join(traceback.format_exception(answer.error)) if answer.error else ""
    return f"{answer.status} {answer.body[:300]!r}\n{trace}"


@pytest.mark.timeout(120)
@FUZZ
@given(request=requests(), query=queries(), head=headers())
def test_no_request_gets_a_server_error(
    edge: Harness,
    request: tuple[str, str, bytes],
    query: bytes,
    head: list[tuple[bytes, bytes]],
) -> None:
    method, path, body = request
    answer = edge.http(method, path, query, head, body)
    event(f"HTTP {answer.status}")  # shown by --hypothesis-show-statistics
    assert answer.error is None, _explain(answer)
    assert answer.status is not None and answer.status < 500, _explain(answer)


frames = st.one_of(
    st.binary(max_size=100),
    texts,
    st.tuples(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["start", "cancel"]) | texts, "id": texts | json_values}
        ),
        chat_bodies,
    ).map(lambda p: json.dumps({**p[1], **p[0]})),
    st.tuples(json_values, st.sampled_from(ENCODINGS)).map(lambda p: _encoded(*p)),
)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=SOCKET_EXAMPLES)
@given(head=headers(), sent=st.lists(frames, max_size=4))
def test_no_socket_frame_gets_a_server_error(
    edge: Harness, head: list[tuple[bytes, bytes]], sent: list[str | bytes]
) -> None:
    answer = edge.websocket("/v1/chat/ws", head, sent)
    assert answer.error is None, repr(answer.error)
    assert answer.denied is None or answer.denied < 500
    for frame in answer.frames:
        error = json.loads(frame).get("error") or {}
        assert error.get("type") != "server_error", frame
