"""Total parsers for values a client puts in headers and cursor parameters: each returns a
valid value or raises one of the edge's 4xx errors, and bounds a number's length before it
converts it (Python refuses to convert more than 4300 digits, and never should here).
"""

from __future__ import annotations

import re
from typing import Final

from .errors import InvalidCursor

# Valkey stream ids, which event cursors are: `<ms>-<seq>`, each an unsigned 64-bit number.
MAX_STREAM_ID_PART: Final = 2**64 - 1
_CURSOR: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_DIGITS: Final = re.compile(r"[0-9]+")
# More digits than any wait or lifetime we would honour: such a value is just "very long".
_MAX_SECONDS_DIGITS: Final = 9


def event_cursor(text: str) -> str:
    """A JobEvent cursor as given (`""`: from the start); InvalidCursor unless it is
    `<ms>-<seq>` with both parts in 0..2**64-1, as Valkey takes it."""
    if not text:
        return ""
    match = _CURSOR.fullmatch(text)
    if match is None or max(int(match[1]), int(match[2])) > MAX_STREAM_ID_PART:
        raise InvalidCursor(
            "malformed cursor: expected <ms>-<seq> from an event's id, each part 0..2^64-1",
            metadata={"cursor": text[:64]},
        )
    return text


def delta_seconds(text: str) -> int | None:
    """RFC 9110 delta-seconds (ASCII digits only) as a number, None when it is not one; a
    value of more than 9 digits reads as 10**9 (RFC 9111 5.1 caps such values the same way)."""
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_SECONDS_DIGITS else 10**_MAX_SECONDS_DIGITS
