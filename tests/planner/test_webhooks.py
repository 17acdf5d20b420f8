"""Standard Webhooks for jobs: signing, the SSRF guard, and delivery through the real worker,
Temporal and a real HTTP receiver on 127.0.0.1 (allow-listed for the test)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
import standardwebhooks
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.settings import Secret
from switchboard.planner import ids, webhooks
from switchboard.planner.activities import Activities, Webhooks
from switchboard.planner.config import WebhookSettings, WorkerSettings
from switchboard.planner.events import EventLog, now
from switchboard.planner.store import JobStore
from switchboard.planner.worker import build_worker

from .fake_inference import FakeInference
from .support import WAIT_S

Job = jobs_pb2.Job


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_sign_verifies_with_the_reference_library() -> None:
    secret, body = new_secret(), b'{"type":"job.completed"}'
    stamp = int(time.time())
    headers = webhooks.headers(secret, "msg_1", stamp, body)

    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"type": "job.completed"}
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)


def test_message_id_is_stable_per_job() -> None:
    assert webhooks.message_id("c/a") == webhooks.message_id("c/a")
    assert webhooks.message_id("c/a") != webhooks.message_id("c/b")
    assert webhooks.message_id("c/a").startswith("msg_")


FORBIDDEN = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "ftp://example.com/",
    "file:///etc/passwd",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("url", FORBIDDEN)
async def test_private_and_odd_destinations_are_forbidden(url: str) -> None:
    with pytest.raises(webhooks.WebhookDestinationForbidden) as caught:
        await webhooks.check_destination(url, allow=())
    assert caught.value.reason == "WEBHOOK_DESTINATION_FORBIDDEN"
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:8080/hook", ("127.0.0.1",)),
        ("http://localhost/", ("localhost",)),
        ("http://2130706433/", ("127.0.0.1",)),  # allowed by the address it resolves to
        ("http://[::1]/", ("::1",)),
        ("https://8.8.8.8/", ()),  # public: no allow-list needed
        ("http://[::ffff:8.8.8.8]/", ()),
    ],
)
async def test_allow_listed_and_public_destinations_pass(url: str, allow: tuple[str, ...]) -> None:
    await webhooks.check_destination(url, allow=allow)


def test_worker_reads_webhook_settings_without_showing_secrets() -> None:
    settings = WorkerSettings.from_env(
        {
            "SWITCHBOARD_WORKER_WEBHOOK_SECRETS": "acme=whsec_YQ==, beta=whsec_Yg==",
            "SWITCHBOARD_WORKER_WEBHOOK_DEFAULT_SECRET": "whsec_Yw==",
            "SWITCHBOARD_WORKER_WEBHOOK_ALLOW": "127.0.0.1, localhost",
            "SWITCHBOARD_WORKER_WEBHOOK_MAX_ATTEMPTS": "3",
        }
    ).webhooks
    assert settings.secret_for("beta").value == "whsec_Yg=="
    assert settings.secret_for("other").value == "whsec_Yw=="
    assert (settings.allow, settings.max_attempts) == (("127.0.0.1", "localhost"), 3)
    assert "whsec" not in repr(settings)
    with pytest.raises(ValueError, match="WEBHOOK_SECRETS") as caught:
        WorkerSettings.from_env({"SWITCHBOARD_WORKER_WEBHOOK_SECRETS": "whsec_only"})
    assert "whsec_only" not in str(caught.value)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: answers each request with the next status of `statuses`."""

    statuses: list[int]
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((path, headers, body))
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        extra = f"location: {self.url('/elsewhere')}\r\n" if 300 <= status < 400 else ""
        writer.write(f"HTTP/1.1 {status} X\r\n{extra}content-length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@asynccontextmanager
async def receiving(statuses: list[int]) -> AsyncIterator[Receiver]:
    receiver = Receiver(statuses)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Stack:
    client: Client
    store: JobStore
    client_id: str
    secret: str

    async def run(self, webhook_url: str) -> Job:
        """Starts a job as CreateJob does and waits for its workflow to end (webhook included)."""
        job_id = uuid.uuid4().hex[:12]
        job = Job(
            name=ids.job_name(job_id),
            state=Job.QUEUED,
            pipeline="generate",
            input=pipelines_pb2.JobInput(
                generate=pipelines_pb2.GenerateInput(model="echo", prompt="hi there")
            ),
            client=self.client_id,
            create_time=now(),
            update_time=now(),
            webhook_url=webhook_url,
        )
        assert await self.store.start(job)
        handle = self.client.get_workflow_handle(ids.workflow_id(self.client_id, job_id))
        async with asyncio.timeout(WAIT_S):
            await handle.result()
        return await self.store.get(self.client_id, job_id)


@asynccontextmanager
async def webhook_stack(
    temporal_client: Client, valkey_client: Valkey, address: str, max_attempts: int
) -> AsyncIterator[Stack]:
    client_id, secret = f"client-{uuid.uuid4().hex[:8]}", new_secret()
    settings = WebhookSettings(
        secrets={client_id: Secret(secret)},
        default_secret=Secret(new_secret()),  # not this client's: a wrong pick fails to verify
        allow=("127.0.0.1",),
        timeout_seconds=2.0,
        initial_interval_seconds=0.2,
        max_attempts=max_attempts,
    )
    task_queue = f"test-{uuid.uuid4().hex}"
    channel = grpc.aio.insecure_channel(address)
    activities = Activities(
        inference_pb2_grpc.InferenceServiceStub(channel), EventLog(valkey_client)
    )
    worker = build_worker(
        temporal_client, task_queue, activities, grace_seconds=1.0, webhooks=Webhooks(settings)
    )
    try:
        async with worker:
            yield Stack(temporal_client, JobStore(temporal_client, task_queue), client_id, secret)
    finally:
        await channel.close(grace=None)


@pytest.mark.asyncio
async def test_delivery_is_retried_with_one_id_and_signed(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with (
        receiving([500, 500, 200]) as receiver,
        webhook_stack(temporal_client, valkey_client, inference[1], max_attempts=5) as stack,
    ):
        job = await stack.run(receiver.url())

    assert job.state == Job.SUCCEEDED
    assert len(receiver.requests) == 3
    assert len({headers["webhook-id"] for _, headers, _ in receiver.requests}) == 1
    _, headers, body = receiver.requests[-1]
    message = standardwebhooks.Webhook(stack.secret).verify(body, headers)
    assert message["type"] == "job.completed"
    assert message["data"]["job"]["name"] == job.name
    assert message["data"]["job"]["state"] == "SUCCEEDED"
    assert message["data"]["result_url"] == f"/v1/{job.name}/result"
    assert json.loads(body) == message


@pytest.mark.asyncio
async def test_redirect_is_a_failure_and_not_followed(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with (
        receiving([302]) as receiver,
        webhook_stack(temporal_client, valkey_client, inference[1], max_attempts=2) as stack,
    ):
        job = await stack.run(receiver.url())

    assert job.state == Job.SUCCEEDED  # a failed delivery leaves the job's state alone
    assert [path for path, _, _ in receiver.requests] == ["/hook", "/hook"]


@pytest.mark.asyncio
async def test_forbidden_destination_is_not_retried(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with webhook_stack(temporal_client, valkey_client, inference[1], 50) as stack:
        job = await stack.run("http://10.0.0.1/hook")
        history = await stack.client.get_workflow_handle(
            ids.workflow_id(stack.client_id, ids.job_id_of(job.name))
        ).fetch_history()

    assert job.state == Job.SUCCEEDED
    failures = [
        e.activity_task_failed_event_attributes.failure
        for e in history.events
        if e.HasField("activity_task_failed_event_attributes")
    ]
    assert [f.application_failure_info.type for f in failures] == ["WEBHOOK_DESTINATION_FORBIDDEN"]


def test_errors_are_switchboard_errors() -> None:
    assert issubclass(webhooks.WebhookSecretMissing, SwitchboardError)
    assert webhooks.WebhookSecretMissing("x").reason == "WEBHOOK_SECRET_MISSING"


# --- DNS pinning: the request goes to the addresses the guard checked -----------------------


@dataclass
class Resolver:
    """A DNS stand-in (no DNS server can be run here) whose answer changes after the first
    lookup, as a rebinding attacker's does."""

    answers: list[list[str]]
    calls: int = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


def _signed(body: bytes = b"{}") -> dict[str, str]:
    return webhooks.headers(new_secret(), "msg_1", int(time.time()), body)


@pytest.mark.asyncio
async def test_a_rebinding_answer_after_the_check_is_never_used() -> None:
    """Checked: a public address. Answered afterwards: loopback, where a receiver waits (the
    system resolver says so for `localhost`, so a second lookup by httpx would reach it). The
    delivery goes to the public address (unreachable here, so it fails) and never to it."""
    async with receiving([200]) as receiver:
        resolver = Resolver([["93.184.216.34"], ["127.0.0.1"]])
        url = f"http://localhost:{receiver.port}/hook"
        destination = await webhooks.check_destination(url, allow=(), resolve=resolver)
        assert destination.addresses == (ipaddress.ip_address("93.184.216.34"),)

        with pytest.raises(httpx.TransportError):
            await webhooks.post(destination, b"{}", _signed(), timeout_s=0.5)

    assert receiver.requests == []
    assert resolver.calls == 1


@pytest.mark.asyncio
async def test_delivery_connects_to_the_checked_address_with_the_hosts_name() -> None:
    """`hooks.test` resolves nowhere but in the stand-in: only the pinned address can work."""
    async with receiving([204]) as receiver:
        resolver = Resolver([["127.0.0.1"]])
        url = f"http://hooks.test:{receiver.port}/hook?x=1"
        destination = await webhooks.check_destination(url, allow=("127.0.0.1",), resolve=resolver)
        status = await webhooks.post(destination, b'{"a":1}', _signed(b'{"a":1}'), timeout_s=5)

    assert status == 204
    path, headers, body = receiver.requests[0]
    assert (path, headers["host"], body) == ("/hook?x=1", f"hooks.test:{receiver.port}", b'{"a":1}')
    assert "webhook-signature" in headers


@pytest.mark.asyncio
async def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    async with receiving([200]) as receiver:  # listens on 127.0.0.1 only
        resolver = Resolver([["127.0.0.2", "127.0.0.1"]])
        url = f"http://hooks.test:{receiver.port}/hook"
        allow = ("127.0.0.1", "127.0.0.2")
        destination = await webhooks.check_destination(url, allow=allow, resolve=resolver)
        assert await webhooks.post(destination, b"{}", _signed(), timeout_s=5) == 200
    assert len(receiver.requests) == 1


@pytest.mark.asyncio
async def test_one_forbidden_address_among_public_ones_forbids_the_host() -> None:
    resolver = Resolver([["93.184.216.34", "10.0.0.7"]])
    with pytest.raises(webhooks.WebhookDestinationForbidden) as caught:
        await webhooks.check_destination("https://hooks.example/", allow=(), resolve=resolver)
    assert caught.value.metadata["addresses"] == "10.0.0.7"


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` only (no IP address in it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp / f"{name}.key", tmp / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@asynccontextmanager
async def receiving_tls(key: Path, cert: Path) -> AsyncIterator[Receiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver = Receiver([200])
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=context)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_https_keeps_the_server_name_and_certificate_check_on_the_host(
    tmp_path: Path,
) -> None:
    key, cert = _certificate(tmp_path, "hooks.test")
    trusted = ssl.create_default_context(cafile=str(cert))
    resolver = Resolver([["127.0.0.1"]])
    async with receiving_tls(key, cert) as receiver:
        url = f"https://hooks.test:{receiver.port}/hook"
        destination = await webhooks.check_destination(url, allow=("127.0.0.1",), resolve=resolver)
        status = await webhooks.post(destination, b"{}", _signed(), timeout_s=5, verify=trusted)
        assert status == 200
        # A certificate for another name fails, though the address is the same.
        other = f"https://other.test:{receiver.port}/hook"
        elsewhere = await webhooks.check_destination(other, allow=("127.0.0.1",), resolve=resolver)
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED"):
            await webhooks.post(elsewhere, b"{}", _signed(), timeout_s=5, verify=trusted)
    assert [headers["host"] for _, headers, _ in receiver.requests] == [
        f"hooks.test:{receiver.port}"
    ]


@pytest.mark.asyncio
async def test_a_host_allow_listed_by_name_is_reached_as_the_url_says() -> None:
    resolver = Resolver([["10.0.0.1"]])
    destination = await webhooks.check_destination(
        "http://localhost:1/hook", allow=("localhost",), resolve=resolver
    )
    assert destination.addresses == () and resolver.calls == 0
