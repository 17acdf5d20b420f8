"""Standard Webhooks (https://www.standardwebhooks.com) for jobs: signing, the message, the
guard that keeps a job's webhook_url from reaching the worker's own network (SSRF), the
delivery to the addresses that guard checked, and what a receiver's answer means for the
next attempt.

The guard reads the URL with the parser the request is made with (httpx's), so both see one
host. A host that is an address names it without DNS: in the usual spelling only (four
decimal numbers, or IPv6); the other forms getaddrinfo accepts through inet_aton (octal
`0177.0.0.1`, hex `0x7f.1`, integer `2130706433`, short `127.1`) are refused outright, as are
zone ids: parsers disagree on what such a host is, and none is needed to reach a receiver.
A name is resolved once per attempt, by `check_destination`; `post` connects to the checked
addresses themselves (the URL's host replaced by the address, the Host header and, for https,
the TLS server name and certificate check kept on the host name), so a DNS answer that
changes after the check (rebinding) cannot point the request elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from google.protobuf import json_format

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import SwitchboardError

from ..shared.errors import (
    WebhookDeliveryFailed,
    WebhookDestinationForbidden,
    WebhookReceiverRefused,
)

SECRET_PREFIX = "whsec_"
EVENT_TYPE = "job.completed"
_SCHEMES = ("http", "https")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# 4xx answers that a later attempt may see otherwise: timeout, conflict, too early, too many.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Redirects are never followed; these say the receiver moved for good.
_PERMANENT_3XX = frozenset({301, 308})
# A Retry-After longer than this is not taken as meant (the schedule's cap applies anyway).
_RETRY_AFTER_MAX_SECONDS = 24 * 3600
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → the addresses it resolves to, as getaddrinfo gives them.
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class Destination:
    """A checked webhook_url and the addresses to connect to, in the resolver's order. None
    for a host allow-listed by name: it is trusted, and reached as the URL says."""

    url: str
    addresses: tuple[Address, ...] = ()


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


async def check_destination(
    url: str, *, allow: Sequence[str], resolve: Resolve | None = None
) -> Destination:
    """Raises WebhookDestinationForbidden unless every address the host names or resolves to
    is public or allow-listed; returns those addresses, the only ones `post` will connect to.

    A host in `allow` (as the URL parser normalises it) is exempt. A host that is an address
    is never resolved; one spelled otherwise than as usual is refused, allow-listed or not.
    """
    try:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError) as e:  # httpx refuses `0177.0.0.1`; getaddrinfo not
        raise WebhookDestinationForbidden(
            "webhook_url is not a URL the worker can call", metadata={"reason": str(e)[:200]}
        ) from e
    host = parsed.host
    if parsed.scheme not in _SCHEMES or not host:
        raise WebhookDestinationForbidden(
            "webhook_url must be an http or https URL", metadata={"scheme": parsed.scheme}
        )
    if host in allow:
        return Destination(url)
    literal = literal_address(host)
    if literal is not None:
        addresses: tuple[Address, ...] = (literal,)
    else:
        try:
            found = await (resolve or _getaddrinfo)(parsed.raw_host.decode("ascii"), port)
            addresses = tuple(
                dict.fromkeys(ipaddress.ip_address(a.partition("%")[0]) for a in found)
            )
        except (OSError, ValueError, UnicodeError) as e:
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


def literal_address(host: str) -> Address | None:
    """The address a host is, read as the connect would read it (no DNS); None for a name.

    Raises WebhookDestinationForbidden for a host that getaddrinfo would take as an address
    but that is not written the usual way: the inet_aton forms of IPv4 (octal, hex, integer,
    fewer than four parts, leading zeros), and anything with a `%` (an IPv6 zone id, or an
    escape no name has).
    """
    if "%" in host:
        raise WebhookDestinationForbidden(
            "webhook_url's host has a zone id or an escape", metadata={"host": host}
        )
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _inet_aton(host) or _inet_pton6(host):
        raise WebhookDestinationForbidden(
            "webhook_url's host is an address in an unusual spelling; write IPv4 as four "
            "decimal numbers",
            metadata={"host": host},
        )
    return None


def _inet_aton(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


def _inet_pton6(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return False
    return True


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
