"""Standard Webhooks for jobs (`webhooks.py`): signing, DNS pinning, and what a receiver's
answer means for the next attempt. The SSRF guard is in `test_webhook_destinations.py`,
delivery through the worker and Temporal in `test_delivery.py`."""

from __future__ import annotations

import base64
import ipaddress
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import grpc
import httpx
import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import strategies as st

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.settings import Secret
from switchboard.planner.shared import errors
from switchboard.planner.shared.config import WebhookSettings, WorkerSettings
from switchboard.planner.work import webhooks

from .receivers import receiving


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


def test_the_message_leaves_out_its_own_delivery_status() -> None:
    pending = events_pb2.WebhookDelivery(state=events_pb2.WebhookDelivery.PENDING)
    job = jobs_pb2.Job(name="jobs/j-1", state=jobs_pb2.Job.SUCCEEDED, webhook_delivery=pending)
    message = webhooks.payload(job)
    assert message["data"]["job"] == {"name": "jobs/j-1", "state": "SUCCEEDED"}
    assert job.HasField("webhook_delivery")  # the caller's job is left as it was


# --- answers: which a retry may change ------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 413, 415, 422, 451, 301, 308])
def test_answers_a_retry_cannot_change_are_final(status: int) -> None:
    error = webhooks.Answer(status).error()
    assert isinstance(error, errors.WebhookReceiverRefused)
    assert error.reason == "WEBHOOK_RECEIVER_REFUSED"
    assert error.metadata == {"http_status": str(status)}


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 302, 303, 307])
def test_answers_a_retry_may_change_are_retried(status: int) -> None:
    error = webhooks.Answer(status).error()
    assert isinstance(error, errors.WebhookDeliveryFailed)
    assert (error.reason, error.code) == ("WEBHOOK_DELIVERY_FAILED", grpc.StatusCode.UNAVAILABLE)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_delivers(status: int) -> None:
    assert webhooks.Answer(status).delivered and webhooks.Answer(status).error() is None


@given(st.integers(100, 599))
def test_only_5xx_and_a_few_4xx_and_redirects_are_retried(status: int) -> None:
    expected = not (400 <= status < 500 and status not in (408, 409, 425, 429)) and status not in (
        301,
        308,
    )
    assert webhooks.retryable_status(status) == expected


NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("1.5", None),
        ("1e3", None),
        ("soon", None),
        ("9" * 5000, None),  # bounded before conversion
        ("٣", None),  # a digit, but not an ASCII one
        ("90000", None),  # over a day: not meant
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), None),  # the past
    ],
)
def test_retry_after_is_read_when_sane(value: str | None, seconds: float | None) -> None:
    assert webhooks.retry_after(value, NOW) == seconds


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
    assert WebhookSettings(default_secret=Secret("whsec_x")).secret_for("a").value == "whsec_x"
    with pytest.raises(ValueError, match="WEBHOOK_SECRETS") as caught:
        WorkerSettings.from_env({"SWITCHBOARD_WORKER_WEBHOOK_SECRETS": "whsec_only"})
    assert "whsec_only" not in str(caught.value)


def test_errors_are_switchboard_errors() -> None:
    assert issubclass(errors.WebhookSecretMissing, SwitchboardError)
    assert errors.WebhookSecretMissing("x").reason == "WEBHOOK_SECRET_MISSING"
    assert errors.WebhookReceiverRefused("x").code == grpc.StatusCode.FAILED_PRECONDITION


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
    async with receiving([(204, {"retry-after": "7"})]) as receiver:
        resolver = Resolver([["127.0.0.1"]])
        url = f"http://hooks.test:{receiver.port}/hook?x=1"
        destination = await webhooks.check_destination(url, allow=("127.0.0.1",), resolve=resolver)
        answer = await webhooks.post(destination, b'{"a":1}', _signed(b'{"a":1}'), timeout_s=5)

    assert answer == webhooks.Answer(204, 7.0)
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
        assert (await webhooks.post(destination, b"{}", _signed(), timeout_s=5)).status == 200
    assert len(receiver.requests) == 1


@pytest.mark.asyncio
async def test_one_forbidden_address_among_public_ones_forbids_the_host() -> None:
    resolver = Resolver([["93.184.216.34", "10.0.0.7"]])
    with pytest.raises(errors.WebhookDestinationForbidden) as caught:
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


@pytest.mark.asyncio
async def test_https_keeps_the_server_name_and_certificate_check_on_the_host(
    tmp_path: Path,
) -> None:
    key, cert = _certificate(tmp_path, "hooks.test")
    trusted = ssl.create_default_context(cafile=str(cert))
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    resolver = Resolver([["127.0.0.1"]])
    async with receiving([200], tls=serving) as receiver:
        url = f"https://hooks.test:{receiver.port}/hook"
        destination = await webhooks.check_destination(url, allow=("127.0.0.1",), resolve=resolver)
        answer = await webhooks.post(destination, b"{}", _signed(), timeout_s=5, verify=trusted)
        assert answer.status == 200
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
