"""Standard Webhooks (https://www.standardwebhooks.com) for jobs: signing, the message, and the
guard that keeps a job's webhook_url from reaching the worker's own network (SSRF).

Pure except `check_destination`, which resolves the host.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from google.protobuf import json_format

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import FailedPrecondition

SECRET_PREFIX = "whsec_"
EVENT_TYPE = "job.completed"
_SCHEMES = ("http", "https")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookDestinationForbidden(FailedPrecondition):
    reason = "WEBHOOK_DESTINATION_FORBIDDEN"


class WebhookSecretMissing(FailedPrecondition):
    reason = "WEBHOOK_SECRET_MISSING"


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
    """The `job.completed` message; stamped with the job's end, so every attempt sends it alike."""
    ended = job.update_time.ToDatetime(tzinfo=UTC) if job.HasField("update_time") else None
    return {
        "type": EVENT_TYPE,
        "timestamp": (ended or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "data": {
            "job": json_format.MessageToDict(job),
            "result_url": f"/v1/{job.name}/result",
        },
    }


async def check_destination(url: str, *, allow: Sequence[str]) -> None:
    """Raises WebhookDestinationForbidden unless every address the host resolves to is public.

    A host (or any of its addresses) in `allow` is exempt. Odd spellings of an address
    (`2130706433`, `0177.0.0.1`, `0x7f.0.0.1`) are caught: getaddrinfo normalises them.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in _SCHEMES or not host:
        raise WebhookDestinationForbidden(
            "webhook_url must be an http or https URL", metadata={"scheme": parts.scheme}
        )
    if host in allow:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as e:
        raise WebhookDestinationForbidden(
            "webhook_url's host does not resolve", metadata={"host": host}
        ) from e
    addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
    if any(str(a) in allow for a in addresses):
        return
    forbidden = sorted(str(a) for a in addresses if not is_public(a))
    if forbidden or not addresses:
        raise WebhookDestinationForbidden(
            "webhook_url resolves to an address the worker may not call",
            metadata={"host": host, "addresses": ",".join(forbidden)},
        )


def is_public(address: Address) -> bool:
    """False for loopback, private, link-local (incl. 169.254.169.254), unspecified, multicast
    and reserved addresses, also when embedded in IPv6 (IPv4-mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    flags = (
        address.is_loopback,
        address.is_private,
        address.is_link_local,
        address.is_unspecified,
        address.is_multicast,
        address.is_reserved,
    )
    return address.is_global and not any(flags)
