"""`python -m switchboard.edge` as a real process: ready line, serving, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import WAIT_SECONDS

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def ready_line(log: Path, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("msg") == "ready":
                return dict(json.loads(line))
        time.sleep(0.05)
    raise AssertionError(f"no ready line in time:\n{log.read_text()}")


def test_process_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_EDGE_PORT": "0",
        "SWITCHBOARD_EDGE_PLANNER_ADDRESS": "127.0.0.1:9",
        "SWITCHBOARD_EDGE_API_KEYS": "k=c",
    }
    log = tmp_path / "edge.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "switchboard.edge"], env=env, stdout=sink, stderr=sink
        )
    try:
        ready = ready_line(log, process)
        assert ready["service"] == "edge"
        base = f"http://127.0.0.1:{ready['port']}"
        health = httpx.get(f"{base}/healthz", timeout=WAIT_SECONDS)
        assert health.json() == {"status": "ok"}
        headers = {"Authorization": "Bearer k", "traceparent": TRACEPARENT}
        job = httpx.get(f"{base}/v1/jobs/abc-1", headers=headers, timeout=WAIT_SECONDS)
        assert job.status_code == 503  # nothing listens at the planner address
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_SECONDS) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_SECONDS)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
    messages = [e["msg"] for e in entries]
    assert messages.index("ready") < messages.index("stopped")
    [access] = [e for e in entries if e["msg"] == "request" and e.get("trace_id") == TRACE_ID]
    assert (access["route"], access["status"]) == ("/v1/jobs/{job_id}", 503)
    assert (access["client_id"], access["job_id"]) == ("c", "abc-1")
