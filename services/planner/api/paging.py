"""Opaque ListJobs page tokens: Temporal's visibility token, bound to the client by a checksum.

The checksum turns a mangled or another client's token into INVALID_PAGE_TOKEN at once;
Temporal itself answers a bad token with a retryable UNKNOWN, which would stall the call.
It is not a signature: a forged token still only pages through the caller's own jobs,
because the visibility query names the client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from ..shared.errors import InvalidPageToken

_VERSION = b"\x01"
_SUM_BYTES = 8


def encode(client_id: str, raw: bytes) -> str:
    if not raw:
        return ""
    packed = _VERSION + _checksum(client_id, raw) + raw
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def decode(client_id: str, token: str) -> bytes | None:
    """Temporal's token inside a page token; None for the first page."""
    if not token:
        return None
    try:
        packed = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidPageToken("page_token is not one this service gave out") from e
    version, checksum, raw = packed[:1], packed[1 : 1 + _SUM_BYTES], packed[1 + _SUM_BYTES :]
    if version != _VERSION or not raw or checksum != _checksum(client_id, raw):
        raise InvalidPageToken("page_token is not one this service gave out")
    return raw


def _checksum(client_id: str, raw: bytes) -> bytes:
    return hashlib.blake2b(client_id.encode() + b"\0" + raw, digest_size=_SUM_BYTES).digest()
