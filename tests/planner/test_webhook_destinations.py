"""The SSRF guard of webhooks (`destinations.py`): private and oddly spelled destinations
refused, also over generated spellings of forbidden addresses, none of them looked up."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.planner.shared import errors
from switchboard.planner.work import destinations

FORBIDDEN = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://0/",
    "http://[fe80::1%25eth0]/",
    "ftp://example.com/",
    "file:///etc/passwd",
    "http:///nohost",
    "http://exa mple.com/",
    # Fullwidth digits: getaddrinfo's IDNA step reads them as 127.0.0.1.
    "http://\uff11\uff12\uff17.0.0.1/",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("url", FORBIDDEN)
async def test_private_and_odd_destinations_are_forbidden(url: str) -> None:
    with pytest.raises(errors.WebhookDestinationForbidden) as caught:
        await destinations.check_destination(url, allow=())
    assert caught.value.reason == "WEBHOOK_DESTINATION_FORBIDDEN"
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1:8080/hook",  # httpx refuses it as a URL; getaddrinfo reads 127.0.0.1
        "http://127.000.000.001/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://127.0.1/",
        "http://[fe80::1%25lo]/",
        "http://%31%32%37.0.0.1/",
    ],
)
async def test_odd_spellings_of_an_allowed_address_are_refused_without_dns(url: str) -> None:
    """The local mesh allows 127.0.0.1: only that spelling of it passes. (An odd spelling was
    retried for minutes before: the guard let it through, then the request could not be made.)"""
    with pytest.raises(errors.WebhookDestinationForbidden):
        await destinations.check_destination(url, allow=("127.0.0.1", "localhost"), resolve=_no_dns)


async def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host!r} is an address: it must not be looked up")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:8080/hook", ("127.0.0.1",)),
        ("http://localhost/", ("localhost",)),
        ("http://LOCALHOST/", ("localhost",)),  # hosts compare as the URL parser writes them
        ("http://[::1]/", ("::1",)),
        ("https://8.8.8.8/", ()),  # public: no allow-list needed
        ("http://[::ffff:8.8.8.8]/", ()),
    ],
)
async def test_allow_listed_and_public_destinations_pass(url: str, allow: tuple[str, ...]) -> None:
    await destinations.check_destination(url, allow=allow, resolve=_no_dns)


@pytest.mark.asyncio
async def test_an_address_host_is_connected_to_as_written() -> None:
    destination = await destinations.check_destination(
        "https://8.8.4.4/x", allow=(), resolve=_no_dns
    )
    assert destination.addresses == (ipaddress.ip_address("8.8.4.4"),)


# --- generated spellings: every form of a forbidden address is refused, none looked up ------

_FORBIDDEN_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "0.0.0.0/8",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def forbidden_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    network = draw(st.sampled_from(_FORBIDDEN_V4))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return network[offset]


@st.composite
def number(draw: st.DrawFn, value: int) -> str:
    """`value` as inet_aton reads numbers: decimal, octal (leading 0) or hex (0x), with
    optional extra leading zeros and either case."""
    form = draw(st.sampled_from(["dec", "oct", "hex"]))
    zeros = "0" * draw(st.integers(0, 3))
    if form == "dec":
        return str(value)  # leading zeros would make it octal
    if form == "oct":
        return "0" + zeros + format(value, "o")
    prefix = draw(st.sampled_from(["0x", "0X"]))
    digits = format(value, draw(st.sampled_from(["x", "X"])))
    return prefix + zeros + digits


@st.composite
def v4_spelling(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """The address in one of inet_aton's 1-, 2-, 3- or 4-part forms."""
    value, parts = int(address), draw(st.integers(1, 4))
    octets = [(value >> s) & 0xFF for s in (24, 16, 8, 0)]
    head = octets[: parts - 1]
    tail = value & ((1 << (8 * (5 - parts))) - 1)
    return ".".join(draw(number(v)) for v in [*head, tail])


@st.composite
def v6_spelling(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """The IPv4 address inside IPv6: mapped, compatible, NAT64 or 6to4, dotted or in hex."""
    high, low = int(address) >> 16, int(address) & 0xFFFF
    embedded = draw(st.sampled_from([str(address), f"{high:x}:{low:x}"]))
    form = draw(st.sampled_from(["mapped", "mapped-long", "compat", "nat64", "6to4"]))
    text = {
        "mapped": f"::ffff:{embedded}",
        "mapped-long": f"0:0:0:0:0:FFFF:{embedded}",
        "compat": f"::{embedded}",
        "nat64": f"64:ff9b::{embedded}",
        "6to4": f"2002:{high:x}:{low:x}::1",
    }[form]
    if draw(st.booleans()):
        text += "%25" + draw(st.sampled_from(["eth0", "1", "lo"]))  # a zone id
    return f"[{text}]"


@st.composite
def forbidden_url(draw: st.DrawFn) -> tuple[str, ipaddress.IPv4Address]:
    address = draw(forbidden_v4())
    host = draw(st.one_of(v4_spelling(address), v6_spelling(address)))
    port = draw(st.sampled_from(["", ":80", ":8080"]))
    scheme = draw(st.sampled_from(["http", "https"]))
    return f"{scheme}://{host}{port}/hook", address


# Allow-listed as the local mesh does: only its usual spelling may pass.
_DEV_ALLOW = ("127.0.0.1", "localhost")


@settings(max_examples=300, deadline=None)
@given(forbidden_url())
def test_every_spelling_of_a_forbidden_address_is_refused_without_dns(
    case: tuple[str, ipaddress.IPv4Address],
) -> None:
    url, address = case
    # Only the usual spelling of the allow-listed address itself may pass.
    allowed = urlsplit(url).hostname == str(address) and str(address) in _DEV_ALLOW
    try:
        asyncio.run(destinations.check_destination(url, allow=_DEV_ALLOW, resolve=_no_dns))
    except errors.WebhookDestinationForbidden:
        refused = True
    else:
        refused = False
    assert refused != allowed, url


@settings(max_examples=200, deadline=None)
@given(st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)).flatmap(v4_spelling))
def test_the_guard_reads_an_address_host_as_getaddrinfo_does(host: str) -> None:
    """Whatever inet_aton (and so getaddrinfo) takes as an address is refused unless written
    as the usual dotted quad, which must then be the very address getaddrinfo reads."""
    read = ipaddress.IPv4Address(socket.inet_aton(host))
    try:
        found = destinations.literal_address(host)
    except errors.WebhookDestinationForbidden:
        assert host != str(read)
    else:
        assert (host, found) == (str(read), read)


def test_usual_spellings_of_public_addresses_are_kept() -> None:
    assert destinations.literal_address("8.8.8.8") == ipaddress.ip_address("8.8.8.8")
    assert destinations.literal_address("2001:db8::1") == ipaddress.ip_address("2001:db8::1")
    assert destinations.literal_address("hooks.example") is None
    assert destinations.literal_address("0x7f.example") is None  # a name, not hex
