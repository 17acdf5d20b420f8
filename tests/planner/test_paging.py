"""Page tokens round-trip for their client only."""

from __future__ import annotations

import pytest

from switchboard.planner.api import paging
from switchboard.planner.shared.errors import InvalidPageToken


def test_page_token_round_trips_for_its_client() -> None:
    raw = b'{"StartTime":"2026-01-01T00:00:00Z","RunID":"x"}'
    token = paging.encode("alice", raw)
    assert paging.decode("alice", token) == raw
    assert paging.encode("alice", b"") == "" and paging.decode("alice", "") is None
    with pytest.raises(InvalidPageToken):
        paging.decode("bob", token)
    with pytest.raises(InvalidPageToken):
        paging.decode("alice", token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
