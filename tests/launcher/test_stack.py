"""The stack's processes as `up` builds them: two edge replicas sharing Valkey, and one
internal token given to the planner and both edges."""

from __future__ import annotations

import stat
from pathlib import Path

from switchboard.common.settings import Secret
from switchboard.edge.auth import ApiKeys
from switchboard.launcher import stack
from switchboard.launcher.ports import Ports


def test_two_edges_share_valkey_and_the_internal_token(tmp_path: Path) -> None:
    ports = Ports.at(30000)
    specs = {s.name: s for s in stack.build(ports, tmp_path, {}, internal_token="t0k3n")}
    edges = [specs["edge"], specs["edge-2"]]
    assert [e.ports for e in edges] == [(ports.edge,), (ports.edge_2,)]
    for edge in edges:
        assert edge.needs == ("valkey",)
        assert edge.env["SWITCHBOARD_EDGE_VALKEY_URL"] == f"valkey://127.0.0.1:{ports.valkey}/0"
        assert edge.env["SWITCHBOARD_EDGE_INTERNAL_TOKEN"] == "t0k3n"
        assert edge.env["SWITCHBOARD_EDGE_PORT"] == str(edge.ports[0])
    assert specs["planner"].env["SWITCHBOARD_PLANNER_INTERNAL_TOKENS"] == "t0k3n"
    assert {"edge", "edge-2"} <= set(specs["envoy"].needs)
    assert [s.name for s in stack.select(list(specs.values()), ["edge-2"])] == ["valkey", "edge-2"]


def test_the_dev_key_is_configured_as_a_digest() -> None:
    assert "sb-dev-key" not in stack.DEV_API_KEYS
    assert ApiKeys.parse(Secret(stack.DEV_API_KEYS)).client_id("Bearer sb-dev-key") == "dev"


def test_each_up_writes_a_new_token_only_its_owner_can_read(tmp_path: Path) -> None:
    first = stack.write_internal_token(tmp_path)
    second = stack.write_internal_token(tmp_path)
    assert len(first) >= 40 and first != second
    assert stack.read_internal_token(tmp_path) == second
    mode = (tmp_path / stack.INTERNAL_TOKEN_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
