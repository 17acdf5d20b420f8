"""A job that names a webhook is announced to the receiver, signed as Standard Webhooks say;
what became of the delivery shows on the job (REST) and in its events (SSE)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import standardwebhooks
from httpx_sse import connect_sse

from switchboard.launcher.stack import DEV_WEBHOOKS

from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.HTTPServer]:
    Receiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_finished_job_calls_its_webhook(mesh: Mesh, receiver: http.server.HTTPServer) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    body = {
        "pipeline": "generate",
        "input": {"generate": {"model": "test-streamer", "prompt": "ring me back"}},
        "webhookUrl": url,
    }
    created = httpx.post(f"{mesh.public}/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert created.status_code == 202, created.text
    deadline = time.monotonic() + 60
    while not Receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(Receiver.received) == 1
    sent_headers, sent = Receiver.received[0]
    secret = DEV_WEBHOOKS["SWITCHBOARD_WORKER_WEBHOOK_DEFAULT_SECRET"]
    message = standardwebhooks.Webhook(secret).verify(sent, sent_headers)
    assert message == json.loads(sent)
    assert message["data"]["job"]["name"] == created.json()["name"]
    assert message["data"]["job"]["state"] == "SUCCEEDED"

    job = _delivery_settled(mesh, created.json()["name"])
    assert job["state"] == "SUCCEEDED"
    delivery = job["webhookDelivery"]
    assert (delivery["state"], delivery["attempts"], delivery["lastHttpStatus"]) == (
        "DELIVERED",
        1,
        204,
    )
    assert "deliverTime" in delivery and "error" not in delivery
    webhook_events = [e for e in _events(mesh, created.json()["name"]) if e["event"] == "webhook"]
    assert [e["data"]["webhook"] for e in webhook_events] == [delivery]


def test_a_refused_webhook_shows_on_the_job_and_in_its_events(mesh: Mesh) -> None:
    """127.0.0.1 is allow-listed in the local mesh; its octal spelling is refused at once."""
    body = {
        "pipeline": "generate",
        "input": {"generate": {"model": "test-streamer", "prompt": "do not ring"}},
        "webhookUrl": "http://0177.0.0.1:9/hooks",
    }
    created = httpx.post(f"{mesh.public}/v1/jobs", json=body, headers=AUTH, timeout=30)
    assert created.status_code == 202, created.text
    name = created.json()["name"]

    job = _delivery_settled(mesh, name)
    assert job["state"] == "SUCCEEDED"  # the job's own state does not depend on it
    delivery = job["webhookDelivery"]
    assert (delivery["state"], delivery["attempts"]) == ("FAILED", 1)
    reasons = [d["reason"] for d in delivery["error"]["details"] if "reason" in d]
    assert reasons == ["WEBHOOK_DESTINATION_FORBIDDEN"]
    events = _events(mesh, name)
    kinds = [e["event"] for e in events]
    assert kinds[-2:] == ["state_changed", "webhook"]
    assert events[-1]["data"]["webhook"] == delivery
    # An SSE client resuming from the terminal event gets the outcome, then the end.
    resumed = _events(mesh, name, last_event_id=events[-2]["id"])
    assert [e["event"] for e in resumed] == ["webhook"]


def _delivery_settled(mesh: Mesh, name: str) -> dict[str, Any]:
    """GET /v1/jobs/{id} until its webhook delivery is no longer PENDING."""
    deadline = time.monotonic() + 60
    while True:
        reply = httpx.get(f"{mesh.public}/v1/{name}", headers=AUTH, timeout=30)
        assert reply.status_code == 200, reply.text
        job: dict[str, Any] = reply.json()
        state = job.get("webhookDelivery", {}).get("state")
        if state not in (None, "PENDING") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def _events(mesh: Mesh, name: str, last_event_id: str | None = None) -> list[dict[str, Any]]:
    headers = {**AUTH, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    events = []
    with (
        httpx.Client(base_url=mesh.public, timeout=30) as client,
        connect_sse(client, "GET", f"/v1/{name}/events", headers=headers) as source,
    ):
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            if sse.data:  # not the `retry:` frame
                events.append({"id": sse.id, "event": sse.event, "data": json.loads(sse.data)})
    return events
