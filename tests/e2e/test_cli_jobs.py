"""`switchboard jobs` and `switchboard chat` against the real mesh, run as a user runs them:
the README's job session, a watch that resumes after its connection is cut, an ingest's
progress bar and an interactive chat on a pseudo-terminal (live tokens, session memory,
Ctrl-C stops a reply, Ctrl-D leaves)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import httpx
import pytest

from .cli_support import CuttableProxy, Terminal, command
from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e

WORDS = "one two three"


def env(url: str) -> dict[str, str]:
    return dict(os.environ, SWITCHBOARD_URL=url, SWITCHBOARD_API_KEY=API_KEY, TERM="xterm")


def sb(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), env=env(mesh.public), capture_output=True, text=True, timeout=120
    )


def create(mesh: Mesh, model: str, prompt: str, *extra: str) -> str:
    given = json.dumps({"model": model, "prompt": prompt})
    done = sb(mesh, "jobs", "create", "generate", given, "--json", *extra)
    assert done.returncode == 0, done.stderr
    name = json.loads(done.stdout)["name"]
    assert isinstance(name, str)
    return name.removeprefix("jobs/")


def lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_the_job_session_of_the_readme(mesh: Mesh) -> None:
    job = create(mesh, "test-streamer", WORDS, "--id", f"cli-{uuid.uuid4().hex[:8]}")
    watched = sb(mesh, "jobs", "watch", job)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.split() == WORDS.split() * 2  # test-streamer: the prompt twice
    assert "succeeded" in watched.stderr
    shown = sb(mesh, "jobs", "get", job, "--json")
    assert json.loads(shown.stdout)["state"] == "SUCCEEDED"
    result = sb(mesh, "jobs", "result", f"jobs/{job}")
    assert result.returncode == 0 and result.stdout.split() == WORDS.split() * 2
    listed = json.loads(sb(mesh, "jobs", "list", "--json", "--page-size", "100").stdout)
    assert f"jobs/{job}" in [j["name"] for j in listed["jobs"]]
    events = lines(sb(mesh, "jobs", "watch", job, "--json").stdout)
    ids = [str(e["id"]) for e in events]
    assert events[-1]["event"] == "state_changed" and len(set(ids)) == len(ids)
    later = lines(sb(mesh, "jobs", "watch", job, "--json", "--after", ids[1]).stdout)
    assert [e["id"] for e in later] == ids[2:]
    missing = sb(mesh, "jobs", "get", "no-such-job-here")
    assert missing.returncode == 1 and "JOB_NOT_FOUND" in missing.stderr


def test_cancel_and_a_job_that_did_not_succeed(mesh: Mesh) -> None:
    job = create(mesh, "test-hang", "never answers")
    cancelled = sb(mesh, "jobs", "cancel", job, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] in ("CANCELLING", "CANCELLED")
    watched = sb(mesh, "jobs", "watch", job)
    assert watched.returncode == 1 and "cancelled" in watched.stderr
    assert sb(mesh, "jobs", "result", job).returncode == 1


def test_watch_resumes_after_its_connection_is_cut(mesh: Mesh) -> None:
    words = [f"w{i}" for i in range(30)]
    job = create(mesh, "test-streamer", " ".join(words))  # 60 tokens, about 1.2 s
    proxy = CuttableProxy(mesh.ports.public)
    try:
        args = command("jobs", "watch", job, "--json")
        url = f"http://127.0.0.1:{proxy.port}"
        seen = []
        with subprocess.Popen(args, env=env(url), stdout=subprocess.PIPE, text=True) as watcher:
            assert watcher.stdout is not None
            for line in watcher.stdout:
                seen.append(json.loads(line))
                if len(seen) == 5:
                    proxy.cut()  # mid-stream: the CLI reconnects with Last-Event-ID
            assert watcher.wait(60) == 0
    finally:
        proxy.close()
    assert proxy.connections >= 2
    ids = [str(e["id"]) for e in seen]
    assert len(set(ids)) == len(ids), "an event was repeated"
    tokens = [e["data"]["token"]["text"] for e in seen if e["event"] == "token"]
    assert "".join(tokens).split() == words * 2, "an event was lost"


def test_an_ingest_shows_a_progress_bar(mesh: Mesh) -> None:
    given = {
        "collection": f"cli-{uuid.uuid4().hex[:8]}",
        "document": {"text": "Violins are string instruments. Volcanoes erupt lava. " * 4},
        "chunkTokens": 8,
        "chunkOverlap": 0,
    }
    args = command("jobs", "create", "ingest-document", json.dumps(given), "--watch")
    term = Terminal.spawn(args, env(mesh.public))
    term.expect(r"succeeded", timeout=120)
    assert term.wait() == 0
    assert "100%" in term.seen and "━" in term.seen, term.seen


def test_chat_on_a_terminal(mesh: Mesh) -> None:
    session = f"cli-{uuid.uuid4().hex[:8]}"
    args = command("chat", "--model", "test-streamer", "--session", session)
    term = Terminal.spawn(args, env(mesh.public))
    at = term.expect("you> ")
    term.send("violet is my colour\n")
    at = term.expect(r"colour[^\n]*\n[\s\S]*you> ", start=at)  # echo, then live tokens
    term.send("and yours\n")
    at = term.expect(r"yours[^\n]*\n[\s\S]*you> ", start=at)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=mesh.public, headers=headers, timeout=30) as http:
        turns = http.get(f"/v1/sessions/{session}").json()["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"] * 2
        second = next(j for j in _chat_jobs(http, session))
        result = http.get(f"/v1/{second['name']}/result").json()
        assert result["chat"]["contextMessages"] == 2  # the model saw the first turn

        term.send(" ".join(f"long{i}" for i in range(200)) + "\n")  # about 8 s of tokens
        at = term.expect(r"long199[^\n]*\n[\s\S]*long\d", start=at)  # tokens are coming
        term.send("\x03")  # Ctrl-C: stops this reply, not the chat
        at = term.expect(r"\[stopped\][\s\S]*you> ", start=at)
        stopped = next(j for j in _chat_jobs(http, session))
        deadline = time.monotonic() + 30
        while stopped["state"] != "CANCELLED" and time.monotonic() < deadline:
            time.sleep(0.2)
            stopped = http.get(f"/v1/{stopped['name']}").json()
        assert stopped["state"] == "CANCELLED"
    term.send("\x04")  # Ctrl-D at the prompt: leave
    assert term.wait() == 0


def _chat_jobs(http: httpx.Client, session: str) -> list[dict[str, object]]:
    """The session's chat jobs, newest first."""
    jobs = http.get("/v1/jobs", params={"page_size": "100"}).json()["jobs"]
    return [j for j in jobs if j.get("input", {}).get("chat", {}).get("sessionId") == session]
