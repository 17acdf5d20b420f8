"""The guard that keeps a job's webhook_url from reaching the worker's own network (SSRF).

The guard reads the URL with the parser the request is made with (httpx's), so both see one
host. A host that is an address names it without DNS: in the usual spelling only (four
decimal numbers, or IPv6); the other forms getaddrinfo accepts through inet_aton (octal
`0177.0.0.1`, hex `0x7f.1`, integer `2130706433`, short `127.1`) are refused outright, as are
zone ids: parsers disagree on what such a host is, and none is needed to reach a receiver.
A name is resolved once per attempt, by `check_destination`; `webhooks.post` connects to the
checked addresses themselves, so a DNS answer that changes after the check (rebinding) cannot
point the request elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from ..shared.errors import WebhookDestinationForbidden

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
