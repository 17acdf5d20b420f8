"""The OpenAPI document is generated from the derived route table."""

from __future__ import annotations

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
    assert [p["name"] for p in create["parameters"]] == ["jobId", "idempotencyKey"]
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
    }
    cancel = operations[("POST", "/v1/jobs/{job_id}/cancel")]
    assert [p["name"] for p in cancel["parameters"]] == ["job_id"]
