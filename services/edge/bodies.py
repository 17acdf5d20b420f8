"""Request bodies: read within a size cap, and refuse JSON nested past a depth cap.

The cap holds for chunked bodies too (counted while reading), and a declared
`Content-Length` over it is refused before a byte is read. The depth is checked on the raw
bytes before `json.loads`, whose C scanner recurses once per level.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Final

from starlette.requests import Request

from .errors import BodyTooDeep, BodyTooLarge

# A maximal ingest-document job must fit: 1 MiB of PDF or image bytes is about 1.4 MiB of
# base64, and 1 Mi characters of text is up to 3 MiB of UTF-8 for characters of the Basic
# Multilingual Plane (CJK included). 4 MiB holds either with room for the rest of the job.
MAX_BODY_BYTES: Final = 4 << 20
MAX_JSON_DEPTH: Final = 32

# A JSON string, escapes included (the unrolled form, linear on long strings).
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = [1 if chr(b) in "[{" else -1 if chr(b) in "]}" else 0 for b in range(256)]


async def read_body(request: Request[Any], limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body; BodyTooLarge as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in `raw`, strings ignored; 0 for a scalar."""
    brackets = _STRING.sub(b"", raw).translate(None, delete=_NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    if json_depth(raw) > limit:
        raise BodyTooDeep(f"request body nests deeper than {limit} levels")
