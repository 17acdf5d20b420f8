"""The REST route table is derived from JobService's google.api.http annotations."""

from __future__ import annotations

import pytest

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.edge.errors import MalformedRequest
from switchboard.edge.routes import Binding, build_request, compile_template, expand, job_routes

EXPECTED = {
    ("POST", "/v1/jobs", "CreateJob"),
    ("GET", "/v1/jobs/{job_id}", "GetJob"),
    ("GET", "/v1/jobs", "ListJobs"),
    ("POST", "/v1/jobs/{job_id}/cancel", "CancelJob"),
    ("GET", "/v1/jobs/{job_id}/events", "WatchJob"),
    ("GET", "/v1/jobs/{job_id}/result", "GetJobResult"),
    ("GET", "/v1/pipelines", "ListPipelines"),
    ("GET", "/v1/sessions/{session_id}", "GetChatSession"),
}


def test_route_table_is_every_annotated_rpc() -> None:
    table = job_routes()
    assert {(r.method, r.path, r.rpc) for r in table.routes} == EXPECTED
    service = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
    assert {r.rpc for r in table.routes} == {m.name for m in service.methods}


def test_route_details_follow_the_annotations() -> None:
    table = job_routes().by_rpc
    assert (table["CreateJob"].body, table["CreateJob"].status) == ("job", 202)
    assert (table["CancelJob"].body, table["CancelJob"].status) == ("*", 202)
    assert (table["GetJob"].body, table["GetJob"].status) == ("", 200)
    assert table["WatchJob"].streaming and not table["GetJob"].streaming
    assert table["GetJob"].template == "/v1/{name=jobs/*}"
    assert table["GetJob"].summary == "Returns one job of the calling client."


def test_template_compiles_to_a_starlette_path_and_a_binding() -> None:
    path, bindings = compile_template("/v1/{name=jobs/*}/cancel")
    assert path == "/v1/jobs/{job_id}/cancel"
    assert bindings == (Binding("name", "jobs/{job_id}", ("job_id",)),)


def test_nested_collections_and_bare_variables() -> None:
    path, bindings = compile_template("/v1/{parent=projects/*/jobs/*}/x/{id}")
    assert path == "/v1/projects/{project_id}/jobs/{job_id}/x/{id}"
    assert [b.params for b in bindings] == [("project_id", "job_id"), ("id",)]


@pytest.mark.parametrize("template", ["/v1/{name=jobs/**}", "/v1/{a=jobs/*}/{b=jobs/*}"])
def test_unsupported_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        compile_template(template)


def test_expand_fills_a_template() -> None:
    assert expand("/v1/{name=jobs/*}", {"name": "jobs/abc"}) == "/v1/jobs/abc"


def test_build_request_binds_path_query_and_body() -> None:
    table = job_routes().by_rpc
    body = b'{"pipeline": "generate", "labels": {"team": "a"}}'
    create = build_request(table["CreateJob"], {}, [("job_id", "my-job")], body)
    assert isinstance(create, jobs_pb2.CreateJobRequest)
    assert (create.job_id, create.job.pipeline, dict(create.job.labels)) == (
        "my-job",
        "generate",
        {"team": "a"},
    )
    listing = build_request(table["ListJobs"], {}, [("pageSize", "5"), ("page_token", "t")], b"")
    assert listing == jobs_pb2.ListJobsRequest(page_size=5, page_token="t")
    # The path wins over a body that names the same field.
    cancel = build_request(table["CancelJob"], {"job_id": "abc"}, [], b'{"name": "jobs/zzz"}')
    assert cancel == jobs_pb2.CancelJobRequest(name="jobs/abc")


@pytest.mark.parametrize(
    ("rpc", "query", "body"),
    [
        ("CreateJob", [], b'{"pipeline": "generate", "bogus": 1}'),
        ("CreateJob", [], b"{not json"),
        ("CreateJob", [], b"[1, 2]"),
        ("ListJobs", [("page_size", "many")], b""),
        ("ListJobs", [("bogus", "1")], b""),
        ("ListJobs", [("page_size", "1"), ("page_size", "2")], b""),
        ("CancelJob", [("x", "1")], b""),
    ],
)
def test_malformed_requests_are_refused(
    rpc: str, query: list[tuple[str, str]], body: bytes
) -> None:
    route = job_routes().by_rpc[rpc]
    with pytest.raises(MalformedRequest):
        build_request(route, {"job_id": "abc"}, query, body)
