"""Request bodies: read within a size cap, then JSON that must be UTF-8 and nest at most
a depth cap.

The cap holds for chunked bodies too (counted while reading), and a declared
`Content-Length` over it is refused before a byte is read. JSON is UTF-8 only (RFC 8259
8.1): `json.loads` would also take UTF-16 and UTF-32 bytes, which the depth scan below does
not read, so a body is decoded strictly first, and the scan and the parser see the same
text. The depth is checked before `json.loads`, whose C scanner recurses once per level.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, Final

from starlette.requests import Request

from .errors import BodyNotUtf8, BodyTooDeep, BodyTooLarge, MalformedRequest

# A maximal ingest-document job must fit: 1 MiB of PDF or image bytes is about 1.4 MiB of
# base64, and 1 Mi characters of text is up to 3 MiB of UTF-8 for characters of the Basic
# Multilingual Plane (CJK included). 4 MiB holds either with room for the rest of the job.
MAX_BODY_BYTES: Final = 4 << 20
MAX_JSON_DEPTH: Final = 32
# More digits than any body size we accept: the declared length is compared, not converted.
_MAX_LENGTH_DIGITS: Final = 12

# A JSON string, escapes included (the unrolled form, linear on long strings). One that is
# never closed runs to the end, so every opening quote matches and the scan stays linear.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = [1 if chr(b) in "[{" else -1 if chr(b) in "]}" else 0 for b in range(256)]
_BOM: Final = "\ufeff"
# A \u escape in the surrogate range; only then can a string hold half a pair.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_body(request: Request[Any], limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body; BodyTooLarge as soon as it is known to exceed `limit` bytes."""
    if declared_length(request.headers.get("content-length", "")) > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def declared_length(header: str) -> int:
    """A Content-Length as a number, bounded before conversion; -1 when it is not one (the
    body is counted as it is read either way)."""
    digits = header.strip().lstrip("0") or "0"
    if not (digits.isascii() and digits.isdigit()):
        return -1
    return int(digits) if len(digits) <= _MAX_LENGTH_DIGITS else 10**_MAX_LENGTH_DIGITS


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in `raw`, strings ignored; 0 for a scalar."""
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    if json_depth(raw) > limit:
        raise BodyTooDeep(f"request body nests deeper than {limit} levels")


def utf8(raw: bytes, what: str = "request body") -> str:
    """`raw` decoded as UTF-8, strictly; BodyNotUtf8 for anything else, a BOM included."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyNotUtf8(f"{what} is not UTF-8 (byte {exc.start})") from None
    if text.startswith(_BOM):
        raise BodyNotUtf8(f"{what} starts with a byte order mark; send UTF-8 without one")
    if 0 in raw[:2]:
        # Valid UTF-8, but JSON text never starts so: UTF-16 or UTF-32 without a BOM
        # (RFC 4627 3 told the encodings apart by these zeros).
        raise BodyNotUtf8(f"{what} looks like UTF-16 or UTF-32; send UTF-8")
    return text


def load_json(raw: bytes, what: str = "request body") -> Any:
    """Any JSON value in `raw`: UTF-8, at most MAX_JSON_DEPTH deep, standard JSON only (no
    NaN or Infinity, no number that overflows a double), strings free of half surrogate
    pairs. Raises the edge's 400s only."""
    text = utf8(raw, what)
    # UTF-8 never puts an ASCII byte inside a multi-byte sequence: the byte scan reads
    # exactly the brackets and quotes of `text`.
    check_depth(raw)
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:  # JSONDecodeError, and an integer past int's digit limit
        raise MalformedRequest(f"{what} is not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BodyNotUtf8(f"{what} holds a string with half a surrogate pair") from None
    return value


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:32]} is out of range")
    return number


def _no_constant(name: str) -> None:
    # NaN and Infinity are Python's extensions, not JSON.
    raise ValueError(f"{name} is not a JSON value")
