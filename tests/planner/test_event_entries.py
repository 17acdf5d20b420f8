"""An event's stream entry (`stores/entries.py`): cursors read as Valkey's stream ids."""

from __future__ import annotations

import pytest

from switchboard.planner.shared.errors import InvalidCursor
from switchboard.planner.stores import entries


def test_cursor_order_is_numeric() -> None:
    assert entries.parse_cursor("") == (0, 0)
    assert entries.parse_cursor("10-0") > entries.parse_cursor("9-5")
    assert entries.parse_cursor("5-10") > entries.parse_cursor("5-9")


TOP = 2**64 - 1  # the largest part of a Valkey stream id


@pytest.mark.parametrize("cursor", [f"{TOP + 1}-0", f"0-{TOP + 1}", "99999999999999999999-1"])
def test_cursor_beyond_valkeys_range_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        entries.parse_cursor(cursor)
