"""Body limits: size (413, chunked bodies too) and JSON depth (400), before the planner."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.edge.bodies import MAX_BODY_BYTES, MAX_JSON_DEPTH, json_depth

from .conftest import StandInPlanner
from .test_handlers import GENERATE, error_reason

MIB = 1 << 20


def nested(depth: int) -> dict[str, object]:
    """A job body nesting `depth` levels deep (the outer object is the first)."""
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return {**GENERATE, "pipeline": value}


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"1", 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": [[]]}]}', 5),
        # Brackets inside strings, escaped quotes included, do not count.
        (b'{"a": "[[[{{{", "b": "\\"[[[", "c": ["\\\\"]}', 2),
        (b'["]]]]", ["x"]]', 2),
    ],
)
def test_json_depth_counts_structure_not_strings(raw: bytes, depth: int) -> None:
    assert json_depth(raw) == depth


@pytest.mark.asyncio
async def test_body_over_the_cap_is_413_before_the_planner(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    big = {**GENERATE, "labels": {"pad": "x" * MAX_BODY_BYTES}}
    response = await client.post("/v1/jobs", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert error_reason(response) == "BODY_TOO_LARGE"
    assert planner.calls == []


@pytest.mark.asyncio
async def test_chunked_body_without_length_is_counted_while_read(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"pipeline": "generate", "labels": {"pad": "'
        for _ in range(2 * MAX_BODY_BYTES // (64 << 10)):
            yield b"x" * (64 << 10)
        yield b'"}}'

    response = await client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert (response.status_code, error_reason(response)) == (413, "BODY_TOO_LARGE")
    assert planner.calls == []


@pytest.mark.asyncio
async def test_a_maximal_document_fits(client: httpx.AsyncClient, planner: StandInPlanner) -> None:
    document = base64.b64encode(bytes(range(256)) * (MIB // 256)).decode()
    body = {
        "pipeline": "ingest-document",
        "input": {"ingestDocument": {"collection": "docs", "document": {"pdf": document}}},
    }
    assert len(json.dumps(body)) > 1.3 * MIB
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text[:300]
    request = planner.calls[0].request
    assert isinstance(request, jobs_pb2.CreateJobRequest)
    assert len(request.job.input.ingest_document.document.pdf) == MIB


@pytest.mark.asyncio
async def test_nesting_past_the_cap_is_400_body_too_deep(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    too_deep = await client.post("/v1/jobs", json=nested(MAX_JSON_DEPTH + 1))
    assert (too_deep.status_code, error_reason(too_deep)) == (400, "BODY_TOO_DEEP")
    # Far deeper than json.loads could recurse: refused all the same, not a 500.
    abyss = await client.post(
        "/v1/jobs", content=b"[" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert (abyss.status_code, error_reason(abyss)) == (400, "BODY_TOO_DEEP")
    # At the cap the body is read; it is just not a valid job.
    at_cap = await client.post("/v1/jobs", json=nested(MAX_JSON_DEPTH))
    assert (at_cap.status_code, error_reason(at_cap)) == (400, "MALFORMED_REQUEST")
    assert planner.calls == []
