"""The pipeline catalog that ListPipelines describes: every value Job.pipeline takes.

Each pipeline runs the JobInput field of the same name (`-` for `_`); its input schema is
derived from that field's message, so it always matches the contract.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from google.protobuf import struct_pb2

from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.jsonschema import message_schema


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    stages: tuple[str, ...]
    partial_results: bool = False


ENTRIES: tuple[Entry, ...] = (
    Entry("generate", "One completion from a model, its tokens streamed as events.", ("generate",)),
    Entry("embed", "One vector per text, in order, from an embedding model.", ("embed",)),
    Entry(
        "chat",
        "One user turn of a chat session: the session's recent messages go to the model "
        "before it, and the answer is appended to the session.",
        ("load-session", "generate", "append"),
    ),
    Entry(
        "ingest-document",
        "Reads a document (text, PDF, or an image through OCR), chunks it, embeds the chunks "
        "and upserts them into a vector collection.",
        ("extract", "chunk", "embed", "upsert"),
    ),
    Entry(
        "search",
        "Embeds a query and returns the nearest chunks of a collection.",
        ("embed-query", "search"),
    ),
    Entry(
        "answer",
        "Searches a collection, then generates an answer from the chunks found, citing them "
        "as [1], [2], ...",
        ("embed-query", "search", "generate"),
    ),
    Entry(
        "fan-out",
        "Independent generations in parallel, each with its own timeout; the job succeeds "
        "with every branch's status when at least min_succeeded branches do.",
        ("branches",),
        partial_results=True,
    ),
    Entry(
        "graph",
        "An inline graph of generate and embed stages, run in dependency order and in "
        "parallel where independent; a prompt quotes an earlier stage's text as {{stage_id}}. "
        "The stages are the request's own. Partial results are set per request: only with "
        "allow_partial does a failed stage skip its dependants instead of failing the job.",
        ("stages",),
    ),
)


def input_field(pipeline: str) -> str:
    """The JobInput field a pipeline runs: its name with `_` for `-`."""
    return pipeline.replace("-", "_")


def pipeline_name(input_field: str) -> str:
    """The pipeline that runs a JobInput field: its name with `-` for `_`."""
    return input_field.replace("_", "-")


def pipelines() -> list[jobs_pb2.Pipeline]:
    """The catalog as ListPipelines returns it, in the contract's order."""
    fields = pipelines_pb2.JobInput.DESCRIPTOR.fields_by_name
    described = []
    for entry in ENTRIES:
        message = fields[input_field(entry.name)].message_type
        assert message is not None  # every JobInput field is a message
        schema = struct_pb2.Struct()
        schema.update(message_schema(message))
        described.append(
            jobs_pb2.Pipeline(
                name=entry.name,
                description=entry.description,
                stages=entry.stages,
                partial_results=entry.partial_results,
                input_field=input_field(entry.name),
                input_type=message.full_name,
                input_schema=schema,
            )
        )
    return described


@functools.cache
def listing() -> jobs_pb2.ListPipelinesResponse:
    """The ListPipelines reply, built once (the catalog is fixed for the process)."""
    return jobs_pb2.ListPipelinesResponse(pipelines=pipelines())
