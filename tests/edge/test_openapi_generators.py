"""openapi-python-client accepts the whole document `/openapi.json` serves (the job API and
the OpenAI routes) without leaving anything out, and its models read what the edge writes.
(Against the running mesh: tests/e2e/test_generated_clients.py.)
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.errors import InvalidArgument
from switchboard.edge import codec
from switchboard.edge.openai.requests import parse_chat
from switchboard.edge.openai.schema import add_openai
from switchboard.edge.openapi import document
from switchboard.edge.routes import job_routes

PACKAGE = "switchboard_unit_client"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, str]]:
    out = tmp_path_factory.mktemp("generated")
    # What the edge serves: app.py adds the OpenAI routes to the derived job API.
    (out / "openapi.json").write_text(json.dumps(add_openai(document(job_routes()))))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json",
            "--meta", "none", "--output-path", PACKAGE]  # fmt: skip
    done = subprocess.run(argv, cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(f"{PACKAGE}.models"), done.stdout + done.stderr
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_the_generator_takes_every_schema_without_a_warning(
    generated: tuple[ModuleType, str],
) -> None:
    models, output = generated
    # The generator warns, and still exits 0, when it leaves out a schema or an endpoint.
    assert "Warning" not in output and "Unable to" not in output, output
    for name in ("Job", "JobInput", "JobResult", "JobEvent", "JobEventFrame", "Error", "Status"):
        assert hasattr(models, name), name
    for name in ("ChatCompletionRequest", "ChatTool", "FunctionDefinition", "EmbeddingRequest"):
        assert hasattr(models, name), name
    assert models.__file__ is not None
    root = Path(models.__file__).parents[1] / "api"
    for operation in ("create_chat_completion", "create_embeddings", "list_open_ai_models"):
        assert (root / "open_ai_compatible" / f"{operation}.py").is_file(), operation


def test_the_chat_request_model_writes_what_the_edge_reads(
    generated: tuple[ModuleType, str],
) -> None:
    models = generated[0]
    body = models.ChatCompletionRequest(
        model="test-streamer",
        messages=[models.ChatMessage(role=models.ChatMessageRole.USER, content="hi")],
        max_tokens=4,
        tools=[],
        logprobs=False,
    )
    request = parse_chat(body.to_dict())
    assert (request.start.model, request.start.params.max_tokens) == ("test-streamer", 4)
    assert [(m.role, m.content) for m in request.start.messages] == [("user", "hi")]
    tool = models.ChatTool.from_dict({"type": "function", "function": {"name": "lookup"}})
    refused = models.ChatCompletionRequest(model="m", messages=body.messages, tools=[tool])
    with pytest.raises(InvalidArgument, match="tools"):
        parse_chat(refused.to_dict())


def test_the_models_read_and_write_a_finished_job_as_the_edge_writes_it(
    generated: tuple[ModuleType, str],
) -> None:
    models = generated[0]
    job = jobs_pb2.Job(name="jobs/abc", state=jobs_pb2.Job.SUCCEEDED, pipeline="generate")
    job.input.generate.model = "test-streamer"
    job.input.generate.prompt = "hello"
    job.input.generate.params.seed = 2**63  # a uint64: a string in JSON
    job.result.generate.text = "hello"
    job.result.generate.usage.prompt_tokens = 3
    job.result.generate.usage.completion_tokens = 6
    job.create_time.GetCurrentTime()
    written: dict[str, Any] = codec.to_dict(job)
    typed = models.Job.from_dict(written)
    assert typed.state == models.JobState.SUCCEEDED
    assert typed.result.generate.usage.completion_tokens == 6
    assert typed.create_time.year >= 2025  # a datetime, not a string
    assert typed.to_dict()["input"] == written["input"]


def test_the_models_read_an_event_and_an_error_detail(generated: tuple[ModuleType, str]) -> None:
    models = generated[0]
    event = events_pb2.JobEvent(cursor="3-0", job="jobs/abc")
    event.token.text = "hi"
    event.token.index = 7
    typed = models.JobEvent.from_dict(codec.to_dict(event))
    assert (typed.cursor, typed.token.text, typed.token.index) == ("3-0", "hi", "7")
    error = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "message": "queue full",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"},
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUEUE_FULL"},
            ],
        }
    }
    retry, info = models.Error.from_dict(error).error.details
    assert isinstance(retry, models.RetryInfo) and retry.retry_delay == "2s"
    assert isinstance(info, models.ErrorInfo) and info.reason == "QUEUE_FULL"
