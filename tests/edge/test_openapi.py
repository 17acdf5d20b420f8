"""The OpenAPI document is generated from the derived route table."""

from __future__ import annotations

from switchboard.edge.openai.schema import add_openai
from switchboard.edge.openapi import document
from switchboard.edge.routes import job_routes

from .test_routes import EXPECTED


def test_document_lists_every_route_with_rpc_ids_and_proto_summaries() -> None:
    doc = document(job_routes())
    operations = {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert {(m, p, op["operationId"]) for (m, p), op in operations.items()} == EXPECTED
    create = operations[("POST", "/v1/jobs")]
    assert create["summary"].startswith("Creates a job and starts it.")
    assert "202" in create["responses"]
    assert create["requestBody"]["description"] == "switchboard.jobs.v1.Job"
    assert [p["name"] for p in create["parameters"]] == [
        "jobId",
        "idempotencyKey",
        "Idempotency-Key",
        "Prefer",
    ]
    listing = operations[("GET", "/v1/jobs")]
    assert {p["name"]: p["schema"]["type"] for p in listing["parameters"]} == {
        "pageSize": "integer",
        "pageToken": "string",
    }
    events = operations[("GET", "/v1/jobs/{job_id}/events")]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert {(p["name"], p["in"]) for p in events["parameters"]} == {
        ("job_id", "path"),
        ("afterCursor", "query"),
        ("Last-Event-ID", "header"),
        ("lastEventId", "query"),
        ("after", "query"),
    }
    cancel = operations[("POST", "/v1/jobs/{job_id}/cancel")]
    assert [p["name"] for p in cancel["parameters"]] == ["job_id"]


def test_document_states_the_http_semantics_the_edge_adds() -> None:
    doc = document(job_routes())
    create = doc["paths"]["/v1/jobs"]["post"]
    assert {"200", "202", "413", "422"} <= set(create["responses"])
    assert create["responses"]["200"]["content"] == create["responses"]["202"]["content"]
    assert {"Location", "Retry-After", "Link", "Preference-Applied"} <= set(
        create["responses"]["202"]["headers"]
    )
    get = doc["paths"]["/v1/jobs/{job_id}"]["get"]
    assert "304" in get["responses"] and "content" not in get["responses"]["304"]
    assert {"ETag", "Cache-Control", "Retry-After"} <= set(get["responses"]["200"]["headers"])
    events = doc["paths"]["/v1/jobs/{job_id}/events"]["get"]
    assert "204" in events["responses"]
    assert events["security"] == [{"apiKey": []}, {"streamToken": []}]
    assert doc["components"]["securitySchemes"]["streamToken"]["in"] == "query"
    assert "409" in doc["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]


def test_document_states_the_answers_of_the_total_parsers_and_the_stream_cap() -> None:
    doc = add_openai(document(job_routes()))
    paths = doc["paths"]
    events = paths["/v1/jobs/{job_id}/events"]["get"]["responses"]
    assert "INVALID_CURSOR" in events["400"]["description"]
    assert "TOO_MANY_STREAMS" in events["429"]["description"]
    assert set(events["429"]["headers"]) == {"Retry-After"}
    for path, method in (("/v1/jobs", "post"), ("/v1/jobs/{job_id}/cancel", "post")):
        assert "BODY_NOT_UTF8" in paths[path][method]["responses"]["400"]["description"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert "too_many_streams" in chat["429"]["description"]
    assert set(chat["429"]["headers"]) == {"Retry-After"}
    assert "body_not_utf8" in chat["400"]["description"]
    embeddings = paths["/v1/embeddings"]["post"]["responses"]
    assert "body_not_utf8" in embeddings["400"]["description"]
    assert "too_many_streams" not in embeddings["429"]["description"]  # never streamed
    # Routes without a body or a cursor promise neither.
    assert "400" not in paths["/v1/jobs/{job_id}"]["get"]["responses"]
    assert "body_not_utf8" not in paths["/v1/models"]["get"]["responses"]["400"]["description"]
