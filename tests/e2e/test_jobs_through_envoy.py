"""The walking skeleton, end to end through Envoy: REST → planner → Temporal → worker →
inference (bidi) → Triton (decoupled) → Valkey → WatchJob → SSE."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse
from valkey.asyncio import Valkey

from switchboard.edge.keys import KeyStore

from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PROMPT = "switchboard streams every token"


def _streamer_text(prompt: str, max_tokens: int) -> str:
    """The test-streamer model's documented output: the prompt's words, cycled."""
    words = prompt.split()
    count = min(max_tokens, 2 * len(words)) if max_tokens else 2 * len(words)
    return "".join(words[i % len(words)] + " " for i in range(count))


def _create(client: httpx.Client, prompt: str, max_tokens: int = 0, **headers: str) -> str:
    body = {
        "pipeline": "generate",
        "input": {
            "generate": {
                "model": "test-streamer",
                "prompt": prompt,
                "params": {"maxTokens": max_tokens},
            }
        },
    }
    reply = client.post("/v1/jobs", json=body, headers={**AUTH, **headers})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert reply.headers["location"] == f"/v1/{job['name']}"
    assert job["state"] == "QUEUED"
    return str(job["name"]).removeprefix("jobs/")


def _events(
    client: httpx.Client, job_id: str, last_event_id: str | None = None
) -> list[dict[str, Any]]:
    headers = dict(AUTH)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events = []
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if not sse.data:
                continue  # the `retry:` frame; httpx-sse yields it, the SSE spec dispatches nothing
            events.append({"id": sse.id, "event": sse.event, "data": json.loads(sse.data)})
    return events


def test_generate_job_streams_tokens_and_succeeds(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        job_id = _create(client, PROMPT)
        events = _events(client, job_id)

        states = [
            e["data"]["stateChanged"]["state"] for e in events if e["event"] == "state_changed"
        ]
        assert states == ["QUEUED", "RUNNING", "SUCCEEDED"]
        tokens = "".join(e["data"]["token"]["text"] for e in events if e["event"] == "token")
        assert tokens == _streamer_text(PROMPT, 0)
        assert all(e["id"] for e in events), "every event carries an id for resume"

        job = client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
        assert job["state"] == "SUCCEEDED"
        assert job["result"]["generate"]["text"] == tokens
        result = client.get(f"/v1/jobs/{job_id}/result", headers=AUTH)
        assert result.status_code == 200
        assert result.json()["generate"]["finishReason"] == "FINISH_REASON_STOP"


def test_events_resume_after_last_event_id(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        job_id = _create(client, "resume from the cursor", max_tokens=4)
        everything = _events(client, job_id)
        resumed = _events(client, job_id, last_event_id=everything[1]["id"])
        assert [e["id"] for e in resumed] == [e["id"] for e in everything[2:]]


def test_another_clients_job_is_not_found(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        job_id = _create(client, "private to its client", max_tokens=2)
        other = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": "Bearer nobody"})
        assert other.status_code == 401
        missing = client.get(f"/v1/jobs/j-{secrets.token_hex(8)}", headers=AUTH)
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error["status"] == "NOT_FOUND"
        assert error["details"][0]["reason"] == "JOB_NOT_FOUND"


def _second_client_key(mesh: Mesh) -> str:
    """A key for another client, made the way `switchboard keys create` makes one."""

    async def create() -> str:
        valkey = Valkey(host="127.0.0.1", port=mesh.ports.valkey)
        try:
            key, _ = await KeyStore(valkey).create(f"other-{secrets.token_hex(4)}")
        finally:
            await valkey.aclose()
        return key

    return asyncio.run(create())


def test_every_job_route_hides_another_clients_job(mesh: Mesh) -> None:
    other = {"Authorization": f"Bearer {_second_client_key(mesh)}"}
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        job_id = _create(client, "mine alone", max_tokens=2)
        _events(client, job_id)  # it has ended: every route has something to show its owner
        routes = [
            ("GET", f"/v1/jobs/{job_id}"),
            ("GET", f"/v1/jobs/{job_id}/events"),
            ("GET", f"/v1/jobs/{job_id}/result"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
        ]
        for method, path in routes:
            mine = client.request(method, path, headers=AUTH)
            assert mine.status_code in (200, 202), (path, mine.text)
            theirs = client.request(method, path, headers=other)
            assert theirs.status_code == 404, (path, theirs.text)
            assert theirs.json()["error"]["details"][0]["reason"] == "JOB_NOT_FOUND", path
        listed = client.get("/v1/jobs", headers=other).json()
        assert all(job["name"] != f"jobs/{job_id}" for job in listed.get("jobs", []))


def test_bad_request_is_rejected_with_a_stable_reason(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        body = {"pipeline": "generate", "input": {"generate": {"model": "test-streamer"}}}
        reply = client.post("/v1/jobs", json=body, headers=AUTH)
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        reasons = [d.get("reason") for d in error["details"]]
        assert "VALIDATION_FAILED" in reasons


def test_trace_context_reaches_the_worker(mesh: Mesh) -> None:
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        job_id = _create(client, "follow the trace", max_tokens=2, traceparent=traceparent)
        _events(client, job_id)
    # A request without a job id may reach either edge replica.
    logs = {"edge": mesh.log("edge") + mesh.log("edge-2")}
    for service in ("edge", "planner", "worker", "inference"):
        text = logs.get(service) or mesh.log(service)
        lines = [json.loads(line) for line in text.splitlines() if trace_id in line]
        assert lines, f"{service} logged nothing with trace {trace_id}"
    for service in ("worker", "inference"):
        traced = [json.loads(x) for x in mesh.log(service).splitlines() if trace_id in x]
        assert any(line.get("job_id") == job_id for line in traced), service


def test_a_client_cannot_claim_another_client_id(mesh: Mesh) -> None:
    forged = {"x-client-id": "victim", "x-switchboard-internal": mesh.internal_token}
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        job_id = _create(client, "whose job is this", max_tokens=1, **forged)
        job = client.get(f"/v1/jobs/{job_id}", headers={**AUTH, **forged}).json()
        refused = client.get("/v1/jobs", headers=forged)
    assert job["client"] == "dev"
    assert refused.status_code == 401


def test_every_answer_carries_the_rate_limit(mesh: Mesh) -> None:
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        first = client.get("/v1/jobs", headers=AUTH)
        second = client.get("/v1/jobs", headers=AUTH)
    for answer in (first, second):
        assert answer.status_code == 200
        limit = int(answer.headers["ratelimit-limit"])
        assert 0 <= int(answer.headers["ratelimit-remaining"]) < limit
        assert int(answer.headers["ratelimit-reset"]) >= 1


def test_embed_job_through_the_mesh(mesh: Mesh) -> None:
    body = {
        "pipeline": "embed",
        "input": {"embed": {"model": "default-embed", "texts": ["a cat", "", "a dog"]}},
    }
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        reply = client.post("/v1/jobs", json=body, headers=AUTH)
        assert reply.status_code == 202, reply.text
        job_id = str(reply.json()["name"]).removeprefix("jobs/")
        events = _events(client, job_id)
        assert events[-1]["data"]["stateChanged"]["state"] == "SUCCEEDED"
        result = client.get(f"/v1/jobs/{job_id}/result", headers=AUTH).json()["embed"]
    assert result["model"] == "all-minilm-l6-v2"
    vectors = [e["values"] for e in result["embeddings"]]
    assert [len(v) for v in vectors] == [384, 384, 384]
    for v in vectors:
        assert abs(sum(x * x for x in v) - 1.0) < 1e-3


@pytest.mark.parametrize("pipeline", ["embed", "generate", "ingest-document"])
def test_a_waited_for_job_is_answered_as_get_shows_it(mesh: Mesh, pipeline: str) -> None:
    """`Prefer: wait` answers a SUCCEEDED job from the job as created and its logged result
    and end (common.jobview), without reading it back: the answer must be the job exactly as
    GET shows it once the workflow has caught up (an ingest job's document left out)."""
    text = "A short document, ingested while the client waits."
    ingest = {"collection": f"e2e-wait-{secrets.token_hex(4)}", "document": {"text": text}}
    inputs: dict[str, dict[str, Any]] = {
        "embed": {"embed": {"model": "default-embed", "texts": ["wait for me"]}},
        "generate": {"generate": {"model": "test-streamer", "prompt": PROMPT}},
        "ingest-document": {"ingestDocument": ingest},
    }
    body = {"pipeline": pipeline, "input": inputs[pipeline], "labels": {"via": "wait"}}
    with httpx.Client(base_url=mesh.public, timeout=60) as client:
        waited = client.post("/v1/jobs", json=body, headers={**AUTH, "Prefer": "wait=30"})
        assert waited.status_code == 200, waited.text
        job = waited.json()
        assert job["state"] == "SUCCEEDED"
        (kind,) = inputs[pipeline]
        assert job["result"][kind]
        shown = client.get(f"/v1/{job['name']}", headers=AUTH).json()
    assert job == shown
    if pipeline == "ingest-document":
        assert job["input"]["ingestDocument"]["document"] == {}  # the text is not echoed
