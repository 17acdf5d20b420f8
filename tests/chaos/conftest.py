"""A stack of the chaos suite's own (never the e2e session mesh: its processes get killed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchboard.launcher.ports import Ports, free_block

from ..stack import start_stack

# Several clients, so the followers stay under the per-client cap on open streams.
API_KEYS = {f"chaos-key-{n}": f"chaos-{n}" for n in range(4)}
# Paced so a generation lasts a few seconds: long enough to be running when a process dies.
STREAMER_TOKENS_PER_SECOND = 25
HEARTBEAT_SECONDS = 5


@dataclass(frozen=True)
class ChaosStack:
    ports: Ports
    state_dir: Path

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def keys(self) -> list[str]:
        return list(API_KEYS)

    def log(self, name: str) -> str:
        return (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    state_dir = tmp_path_factory.mktemp("chaos")
    ports = free_block()
    with pytest.MonkeyPatch.context() as env:
        # The launcher hands its environment to every process it starts (and restarts).
        env.setenv("SWITCHBOARD_EDGE_API_KEYS", ",".join(f"{k}={c}" for k, c in API_KEYS.items()))
        # The load is modest but bursty (every follower reconnects at once after a kill).
        env.setenv("SWITCHBOARD_EDGE_RATE_LIMIT_PER_SECOND", "10000")
        env.setenv("SWITCHBOARD_EDGE_RATE_LIMIT_BURST", "10000")
        env.setenv("SWITCHBOARD_EDGE_HEARTBEAT_SECONDS", str(HEARTBEAT_SECONDS))
        rate = str(STREAMER_TOKENS_PER_SECOND)
        env.setenv("SWITCHBOARD_INFERENCE_TEST_STREAMER_TOKENS_PER_SECOND", rate)
        proc = start_stack(state_dir, ports)
    try:
        yield ChaosStack(ports, state_dir)
    finally:
        proc.stop()
