"""The pipeline catalog covers every pipeline the contract accepts, with the input's schema."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from switchboard.api.buf.validate import validate_pb2
from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.planner.api import catalog

from .support import Planner

# What a client must send for each pipeline, in protobuf JSON names.
REQUIRED = {
    "generate": ["model", "prompt"],
    "embed": ["model", "texts"],
    "chat": ["sessionId", "model", "message"],
    "ingest-document": ["collection", "document"],
    "search": ["collection", "query"],
    "answer": ["collection", "question"],
    "fan-out": ["branches"],
    "graph": ["stages"],
}


def _accepted_pipelines() -> list[str]:
    """The `in` rule of Job.pipeline, read from the contract's descriptor."""
    field = jobs_pb2.Job.DESCRIPTOR.fields_by_name["pipeline"]
    return list(getattr(field.GetOptions().Extensions[validate_pb2.field].string, "in"))


def test_every_pipeline_the_contract_accepts_is_in_the_catalog_in_order() -> None:
    names = [p.name for p in catalog.pipelines()]
    assert names == _accepted_pipelines()
    kinds = [f.name for f in pipelines_pb2.JobInput.DESCRIPTOR.oneofs_by_name["kind"].fields]
    assert sorted(catalog.input_field(n) for n in names) == sorted(kinds)


def test_each_pipeline_names_its_input_field_type_and_stages() -> None:
    by_name = {p.name: p for p in catalog.pipelines()}
    ingest = by_name["ingest-document"]
    assert (ingest.input_field, ingest.input_type) == (
        "ingest_document",
        "switchboard.jobs.v1.IngestDocumentInput",
    )
    assert list(ingest.stages) == ["extract", "chunk", "embed", "upsert"]
    assert list(by_name["chat"].stages) == ["load-session", "generate", "append"]
    assert list(by_name["answer"].stages) == ["embed-query", "search", "generate"]
    assert by_name["fan-out"].input_type == "switchboard.jobs.v1.FanOutInput"
    assert [p.name for p in by_name.values() if p.partial_results] == ["fan-out"]
    assert "allow_partial" in by_name["graph"].description
    assert all(p.description and p.stages for p in by_name.values())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_schema_names_its_required_fields(name: str) -> None:
    pipeline = next(p for p in catalog.pipelines() if p.name == name)
    schema = json_format.MessageToDict(pipeline.input_schema)
    assert schema["type"] == "object" and schema["title"] == pipeline.input_type
    assert schema["required"] == REQUIRED[name]
    assert set(REQUIRED[name]) <= set(schema["properties"])


def test_schemas_carry_the_contracts_rules_in_json_names() -> None:
    by_name = {p.name: json_format.MessageToDict(p.input_schema) for p in catalog.pipelines()}
    fan_out = by_name["fan-out"]["properties"]
    assert fan_out["branches"]["minItems"] == 1 and fan_out["branches"]["maxItems"] == 16
    branch = fan_out["branches"]["items"]
    assert branch["properties"]["id"]["pattern"] == "^[a-z][a-z0-9_-]{0,31}$"
    assert fan_out["branchTimeout"]["type"] == "string"
    assert "minSucceeded" in fan_out
    stage = by_name["graph"]["properties"]["stages"]["items"]
    assert stage["oneOf"] == [{"required": ["generate"]}, {"required": ["embed"]}]
    ingest = by_name["ingest-document"]["properties"]
    assert ingest["document"]["properties"]["pdf"]["contentEncoding"] == "base64"
    assert ingest["chunkOverlap"] == {"type": "integer", "minimum": 0, "maximum": 1024}
    params = by_name["generate"]["properties"]["params"]["properties"]
    assert params["temperature"]["maximum"] == 2
    assert params["seed"]["type"] == ["string", "integer"]


@pytest.mark.asyncio
async def test_list_pipelines_serves_the_catalog(planner: Planner) -> None:
    reply = await planner.stub.ListPipelines(jobs_pb2.ListPipelinesRequest(), metadata=planner.md())
    assert list(reply.pipelines) == catalog.pipelines()
