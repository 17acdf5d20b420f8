"""Standard Webhooks (https://www.standardwebhooks.com) for jobs: signing, the message, the
delivery to the addresses the guard (`destinations`) checked, and what a receiver's answer
means for the next attempt.

`post` connects to the checked addresses themselves (the URL's host replaced by the address,
the Host header and, for https, the TLS server name and certificate check kept on the host
name), so a DNS answer that changes after the check (rebinding) cannot point the request
elsewhere.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from google.protobuf import json_format

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError

from ..shared.errors import WebhookDeliveryFailed, WebhookReceiverRefused
from .destinations import (
    Address,
    Destination,
    Resolve,
    check_destination,
    is_public,
    literal_address,
)

# The delivery and the tests import the guard's names from here too.
__all__ = [
    "EVENT_TYPE",
    "SECRET_PREFIX",
    "Address",
    "Answer",
    "Destination",
    "Resolve",
    "check_destination",
    "headers",
    "is_public",
    "literal_address",
    "message_id",
    "payload",
    "post",
    "retry_after",
    "retryable_status",
    "sign",
]

SECRET_PREFIX = "whsec_"
EVENT_TYPE = "job.completed"
# 4xx answers that a later attempt may see otherwise: timeout, conflict, too early, too many.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Redirects are never followed; these say the receiver moved for good.
_PERMANENT_3XX = frozenset({301, 308})
# A Retry-After longer than this is not taken as meant (the schedule's cap applies anyway).
_RETRY_AFTER_MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Answer:
    """The receiver's answer: its status, and its Retry-After in seconds when it gave a sane one."""

    status: int
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> SwitchboardError | None:
        """Why this answer does not deliver; None when it does."""
        if self.delivered:
            return None
        metadata = {"http_status": str(self.status)}
        if not retryable_status(self.status):
            return WebhookReceiverRefused(f"the receiver answered {self.status}", metadata=metadata)
        return WebhookDeliveryFailed(f"the receiver answered {self.status}", metadata=metadata)


def retryable_status(status: int) -> bool:
    """Whether another attempt may get another answer than this non-2xx status: 5xx, 408, 409,
    425, 429, temporary redirects and anything unusual are retried; other 4xx (400, 401, 403,
    404, 410 Gone...) and the permanent redirects 301 and 308 are final."""
    if 400 <= status < 500:
        return status in _RETRYABLE_4XX
    return status not in _PERMANENT_3XX


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` value asks to wait (delta-seconds or an HTTP date); None when
    absent, malformed, negative or absurdly far (over a day)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # Bounded before conversion: thousands of digits would only cost time.
        seconds = float(value) if len(value) <= 9 else None
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds is None or not 0 <= seconds <= _RETRY_AFTER_MAX_SECONDS:
        return None
    return seconds


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(workflow_id: str) -> str:
    """The same for every attempt at one job's delivery, so receivers can de-duplicate."""
    return "msg_" + hashlib.sha256(workflow_id.encode()).hexdigest()[:32]


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def payload(job: jobs_pb2.Job) -> dict[str, Any]:
    """The `job.completed` message; stamped with the job's end, so every attempt sends it alike.
    Without the delivery status: it is this message's own, and PENDING while it is sent."""
    ended = job.update_time.ToDatetime(tzinfo=UTC) if job.HasField("update_time") else None
    shown = jobs_pb2.Job()
    shown.CopyFrom(job)
    shown.ClearField("webhook_delivery")
    return {
        "type": EVENT_TYPE,
        "timestamp": (ended or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "data": {
            "job": json_format.MessageToDict(shown),
            "result_url": f"/v1/{job.name}/result",
        },
    }


async def post(
    destination: Destination,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    verify: ssl.SSLContext | bool = True,
) -> Answer:
    """POSTs the body; returns the answer. Tries the checked addresses in order, the next
    only when one cannot be connected to; never resolves the host again. Redirects are not
    followed (a 3xx could point past the check), nor proxies from the environment taken."""
    url = httpx.URL(destination.url)
    # A client per delivery: every job's receiver is a different peer, nothing to pool.
    client = httpx.AsyncClient(
        follow_redirects=False, timeout=timeout_s, trust_env=False, verify=verify
    )
    async with client:
        if not destination.addresses:
            return _answer(await client.post(url, content=body, headers=headers))
        pinned_headers = {**headers, "host": url.netloc.decode("ascii")}
        # The TLS server name (and so the certificate check) stays the host's name.
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        refused: httpx.TransportError | None = None
        for address in destination.addresses:
            try:
                response = await client.post(
                    url.copy_with(host=str(address)),
                    content=body,
                    headers=pinned_headers,
                    extensions=extensions,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                refused = e
                continue
            return _answer(response)
        assert refused is not None
        raise refused


def _answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, retry_after(response.headers.get("retry-after")))
