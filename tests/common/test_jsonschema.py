"""JSON Schemas derived from message descriptors: JSON names, types, rules, required fields."""

from __future__ import annotations

from google.protobuf import descriptor, descriptor_pb2

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.jsonschema import SCALAR_TYPES, message_schema


def test_fields_use_json_names_and_the_proto3_json_types() -> None:
    schema = message_schema(jobs_pb2.Job.DESCRIPTOR)
    props = schema["properties"]
    assert schema["title"] == "switchboard.jobs.v1.Job"
    assert {"webhookUrl", "createTime", "pipeline"} <= set(props)
    assert props["createTime"] == {"type": "string", "format": "date-time", "readOnly": True}
    assert props["state"]["enum"][:3] == ["STATE_UNSPECIFIED", "QUEUED", "RUNNING"]
    assert props["error"]["properties"]["code"] == {"type": "integer"}
    assert set(SCALAR_TYPES.values()) == {"integer", "string", "number", "boolean"}


def test_required_comes_from_rules_and_field_behavior_not_from_optional_fields() -> None:
    job = message_schema(jobs_pb2.Job.DESCRIPTOR)
    assert job["required"] == ["pipeline", "input"]  # REQUIRED / required rule
    # IGNORE_IF_ZERO_VALUE: empty is allowed, so not required; its rules still apply.
    assert job["properties"]["webhookUrl"] == {"type": "string", "maxLength": 2048, "format": "uri"}
    ingest = message_schema(pipelines_pb2.IngestDocumentInput.DESCRIPTOR)
    # A pattern the empty string fails makes `collection` required; `documentId`'s allows it;
    # `chunkOverlap` is a proto3 optional.
    assert ingest["required"] == ["collection", "document"]
    assert ingest["properties"]["chunkOverlap"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 1024,
    }


def test_maps_repeated_fields_and_oneofs_carry_their_rules() -> None:
    job = message_schema(jobs_pb2.Job.DESCRIPTOR)
    assert job["properties"]["labels"] == {
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 256},
        "maxProperties": 16,
        "propertyNames": {"minLength": 1, "maxLength": 63, "pattern": "^[a-z][a-z0-9_-]*$"},
    }
    embed = message_schema(pipelines_pb2.EmbedInput.DESCRIPTOR)["properties"]["texts"]
    assert embed == {
        "type": "array",
        "items": {"type": "string", "maxLength": 65536},
        "minItems": 1,
        "maxItems": 256,
    }
    document = message_schema(pipelines_pb2.Document.DESCRIPTOR)
    assert document["oneOf"] == [{"required": [n]} for n in ("text", "pdf", "image")]
    assert document["properties"]["image"] == {"type": "string", "contentEncoding": "base64"}
    pipeline = job["properties"]["pipeline"]
    assert pipeline["enum"][0] == "generate" and "fan-out" in pipeline["enum"]


def test_durations_and_64_bit_integers_are_strings_in_json() -> None:
    fan_out = message_schema(pipelines_pb2.FanOutInput.DESCRIPTOR)["properties"]
    timeout = fan_out["branchTimeout"]
    assert timeout["type"] == "string" and "at most 600s" in timeout["description"]
    seed = fan_out["branches"]["items"]["properties"]["params"]["properties"]["seed"]
    assert seed == {"type": ["string", "integer"], "format": "uint64"}


def test_a_message_nested_in_itself_ends_in_an_untyped_object() -> None:
    schema = message_schema(descriptor_pb2.DescriptorProto.DESCRIPTOR)
    assert schema["properties"]["nestedType"]["items"] == {
        "type": "object",
        "description": "a google.protobuf.DescriptorProto",
    }


def test_with_a_ref_messages_are_pointed_at_and_oneofs_are_marked_on_their_members() -> None:
    seen: list[str] = []

    def ref(message: descriptor.Descriptor) -> dict[str, str]:
        seen.append(message.full_name)
        return {"$ref": f"#/{message.name}"}

    job = message_schema(jobs_pb2.Job.DESCRIPTOR, ref)
    assert job["properties"]["input"] == {"$ref": "#/JobInput"}
    assert job["properties"]["result"] == {"$ref": "#/JobResult", "readOnly": True}
    # Well-known types keep their JSON forms in place.
    assert job["properties"]["createTime"]["format"] == "date-time"
    assert "google.protobuf.Timestamp" not in seen
    kinds = message_schema(pipelines_pb2.JobInput.DESCRIPTOR, ref)
    assert kinds["maxProperties"] == 1 and "oneOf" not in kinds
    assert "one of them required" in kinds["properties"]["embed"]["description"]
    ingest = message_schema(pipelines_pb2.IngestDocumentInput.DESCRIPTOR, ref)
    assert "description" not in ingest["properties"]["chunkOverlap"]  # proto3 optional
