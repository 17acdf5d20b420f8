"""Standard Webhooks (https://www.standardwebhooks.com) for jobs: signing, the message, the
guard that keeps a job's webhook_url from reaching the worker's own network (SSRF), and the
delivery to the addresses that guard checked.

The host is resolved once per attempt, by `check_destination`; `post` connects to the checked
addresses themselves (the URL's host replaced by the address, the Host header and, for https,
the TLS server name and certificate check kept on the host name), so a DNS answer that
changes after the check (rebinding) cannot point the request elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from google.protobuf import json_format

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import FailedPrecondition

SECRET_PREFIX = "whsec_"
EVENT_TYPE = "job.completed"
_SCHEMES = ("http", "https")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → the addresses it resolves to, as getaddrinfo gives them.
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class Destination:
    """A checked webhook_url and the addresses to connect to, in the resolver's order. None
    for a host allow-listed by name: it is trusted, and reached as the URL says."""

    url: str
    addresses: tuple[Address, ...] = ()


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


async def check_destination(
    url: str, *, allow: Sequence[str], resolve: Resolve | None = None
) -> Destination:
    """Raises WebhookDestinationForbidden unless every address the host resolves to is public
    or allow-listed; returns those addresses, the only ones `post` will connect to.

    A host in `allow` is exempt. Odd spellings of an address (`2130706433`, `0177.0.0.1`,
    `0x7f.0.0.1`) are caught: getaddrinfo normalises them.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in _SCHEMES or not host:
        raise WebhookDestinationForbidden(
            "webhook_url must be an http or https URL", metadata={"scheme": parts.scheme}
        )
    if host in allow:
        return Destination(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = await (resolve or _getaddrinfo)(host, port)
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(a.partition("%")[0]) for a in found))
    except (OSError, ValueError) as e:
        raise WebhookDestinationForbidden(
            "webhook_url's host does not resolve", metadata={"host": host}
        ) from e
    forbidden = sorted(str(a) for a in addresses if str(a) not in allow and not is_public(a))
    if forbidden or not addresses:
        raise WebhookDestinationForbidden(
            "webhook_url resolves to an address the worker may not call",
            metadata={"host": host, "addresses": ",".join(forbidden)},
        )
    return Destination(url, addresses)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def post(
    destination: Destination,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    verify: ssl.SSLContext | bool = True,
) -> int:
    """POSTs the body; returns the status. Tries the checked addresses in order, the next
    only when one cannot be connected to; never resolves the host again. Redirects are not
    followed (a 3xx could point past the check), nor proxies from the environment taken."""
    url = httpx.URL(destination.url)
    # A client per delivery: every job's receiver is a different peer, nothing to pool.
    client = httpx.AsyncClient(
        follow_redirects=False, timeout=timeout_s, trust_env=False, verify=verify
    )
    async with client:
        if not destination.addresses:
            return (await client.post(url, content=body, headers=headers)).status_code
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
            return response.status_code
        assert refused is not None
        raise refused


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
