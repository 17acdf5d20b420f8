"""Clients generated from the served `/openapi.json` by real generators work.

openapi-python-client makes a Python client at test time (nothing generated is kept), and
the README's job session runs through it against the whole mesh with its typed models:
create, wait, events (the SSE frames parsed into JobEventFrame and JobEvent), resume,
result, cancel, and a typed error; and a whole chat completion through the OpenAI route's
typed models. The generator leaves out what it cannot type with only a warning (and exit 0),
so its output must hold none. openapi-typescript makes TypeScript types, and `tsc`
type-checks a small use of them (openapi_use.ts), `@ts-expect-error` lines included: an
untyped document would leave those without an error and fail the check.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "switchboard_generated_client"
BIN = Path(sys.executable).parent
JOB_OPERATIONS = ("create_job", "get_job", "list_jobs", "cancel_job", "watch_job", "get_job_result")
OPENAI_OPERATIONS = ("create_chat_completion", "create_embeddings", "list_open_ai_models")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
WAIT_SECONDS = 90.0


def served_document(mesh: Mesh, into: Path) -> Path:
    answer = httpx.get(f"{mesh.public}/openapi.json", timeout=30)
    answer.raise_for_status()
    path = into / "openapi.json"
    path.write_bytes(answer.content)
    return path


def run(argv: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def client_package(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("python-client")
    document = served_document(mesh, out)
    generator = str(BIN / "openapi-python-client")
    output = run([generator, "generate", "--path", str(document), "--meta", "none",
                  "--output-path", str(out / PACKAGE)], out)  # fmt: skip
    # A schema it cannot read costs the endpoints that use it, reported only as a warning.
    assert "Warning" not in output and "will not be generated" not in output, output
    for operation in JOB_OPERATIONS:  # every JobService route became a typed function
        assert (out / PACKAGE / "api" / "default" / f"{operation}.py").is_file(), operation
    for operation in OPENAI_OPERATIONS:
        assert (out / PACKAGE / "api" / "open_ai_compatible" / f"{operation}.py").is_file()
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def frames(stream: str) -> list[dict[str, str]]:
    """The SSE events of a whole response: `field: value` lines, comments and retry left out."""
    events = []
    for block in stream.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and ": " in line)
        fields.pop("", None)  # `: heartbeat` comments
        if "data" in fields:
            events.append(fields)
    return events


def wait_for_end(client: Any, job_id: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        job = op("get_job").sync(job_id, client=client)
        if str(job.state) in TERMINAL:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end in {WAIT_SECONDS} s")


@pytest.mark.timeout(300)
def test_the_generated_python_client_runs_the_readme_session(
    mesh: Mesh, client_package: ModuleType
) -> None:
    with client_package.AuthenticatedClient(
        base_url=mesh.public, token=API_KEY, timeout=httpx.Timeout(60.0)
    ) as client:
        job_id = f"generated-{uuid.uuid4().hex[:8]}"
        text = generate_and_follow(client, job_id)
        result = op("get_job_result").sync(job_id, client=client)
        assert isinstance(result, models().JobResult)
        assert result.generate.text == text and text
        assert result.generate.finish_reason in set(models().GenerateOutputFinishReason)
        cancel_a_long_job(client, f"{job_id}-cancel")
        missing = op("get_job").sync_detailed("no-such-job", client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, models().Error)
        assert missing.parsed.error.status == models().ErrorStatusStatus.NOT_FOUND
        info = missing.parsed.error.details[0]
        assert isinstance(info, models().ErrorInfo) and info.reason


@pytest.mark.timeout(120)
def test_the_generated_python_client_completes_a_chat(
    mesh: Mesh, client_package: ModuleType
) -> None:
    """test-streamer repeats the prompt's words: four tokens of three words wrap once."""
    m = models()
    chat = importlib.import_module(f"{PACKAGE}.api.open_ai_compatible.create_chat_completion")
    message = m.ChatMessage(role=m.ChatMessageRole.USER, content="one two three")
    body = m.ChatCompletionRequest(model="test-streamer", messages=[message], max_tokens=4)
    with client_package.AuthenticatedClient(
        base_url=mesh.public, token=API_KEY, timeout=httpx.Timeout(60.0)
    ) as client:
        answer = chat.sync_detailed(client=client, body=body)
        assert answer.status_code == 200, answer.content
        completion = answer.parsed
        assert isinstance(completion, m.ChatCompletion) and completion.id.startswith("chatcmpl-")
        (choice,) = completion.choices
        assert choice.message.content == "one two three one "
        assert choice.finish_reason == m.ChatCompletionChoicesItemFinishReason.LENGTH
        assert completion.usage.completion_tokens == 4
        missing = chat.sync_detailed(
            client=client, body=m.ChatCompletionRequest(model="no-such-model", messages=[message])
        )
    assert missing.status_code == 404 and isinstance(missing.parsed, m.OpenAIError)
    assert (missing.parsed.error.code, missing.parsed.error.param) == ("model_not_found", "model")


def op(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.default.{name}")


def models() -> Any:
    return importlib.import_module(f"{PACKAGE}.models")


def generate_and_follow(client: Any, job_id: str) -> str:
    """Create, wait, read the events typed, resume after the first: the tokens' text."""
    m = models()
    unset = importlib.import_module(f"{PACKAGE}.types").Unset
    prompt = m.GenerateInput(model="test-streamer", prompt="hello from switchboard")
    body = m.Job(pipeline=m.JobPipeline.GENERATE, input_=m.JobInput(generate=prompt))
    created = op("create_job").sync_detailed(client=client, body=body, job_id=job_id)
    assert created.status_code == 202, created.content
    assert isinstance(created.parsed, m.Job) and created.parsed.name == f"jobs/{job_id}"
    assert created.parsed.input_.generate.prompt == "hello from switchboard"
    assert wait_for_end(client, job_id).state == m.JobState.SUCCEEDED

    stream = op("watch_job").sync_detailed(job_id, client=client)
    assert stream.status_code == 200
    typed = [m.JobEventFrame.from_dict(f) for f in frames(stream.parsed)]
    events = [m.JobEvent.from_dict(json.loads(frame.data)) for frame in typed]
    assert [frame.id for frame in typed] == [event.cursor for event in events]
    states = [e.state_changed.state for e in events if not isinstance(e.state_changed, unset)]
    assert states[-1] == "SUCCEEDED"
    after = typed[0].id
    resumed = op("watch_job").sync_detailed(job_id, client=client, last_event_id_header=after)
    assert [f["id"] for f in frames(resumed.parsed)] == [frame.id for frame in typed[1:]]
    return "".join(e.token.text for e in events if not isinstance(e.token, unset))


def cancel_a_long_job(client: Any, job_id: str) -> None:
    m = models()
    long = m.GenerateInput(
        model="test-streamer",
        prompt=" ".join(f"word{i}" for i in range(400)),
        params=m.InferenceSamplingParams(max_tokens=800),
    )
    body = m.Job(pipeline=m.JobPipeline.GENERATE, input_=m.JobInput(generate=long))
    created = op("create_job").sync_detailed(client=client, body=body, job_id=job_id)
    assert created.status_code == 202, created.content
    cancelled = op("cancel_job").sync_detailed(job_id, client=client)
    assert cancelled.status_code == 202 and isinstance(cancelled.parsed, m.Job)
    assert wait_for_end(client, job_id).state == m.JobState.CANCELLED


@pytest.mark.timeout(180)
def test_typescript_types_from_the_document_type_check_a_client(mesh: Mesh, tmp_path: Path) -> None:
    node_bin = ROOT / "node_modules" / ".bin"
    document = served_document(mesh, tmp_path)
    run([str(node_bin / "openapi-typescript"), str(document), "-o", "api.d.ts"], tmp_path)
    shutil.copy(Path(__file__).with_name("openapi_use.ts"), tmp_path / "use.ts")
    run([str(node_bin / "tsc"), "--noEmit", "--strict", "--target", "es2022",
         "--module", "es2022", "--moduleResolution", "bundler", "use.ts"], tmp_path)  # fmt: skip
