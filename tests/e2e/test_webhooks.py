"""A job that names a webhook is announced to the receiver, signed as Standard Webhooks say."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import standardwebhooks

from switchboard.launcher.stack import DEV_WEBHOOKS

from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e


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
    headers = {"Authorization": f"Bearer {API_KEY}"}
    created = httpx.post(f"{mesh.public}/v1/jobs", json=body, headers=headers, timeout=30)
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
