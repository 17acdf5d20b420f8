"""A stack of the chaos suite's own (never the e2e session mesh: its processes get killed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.launcher.ports import free_block

from ..stack import Stack, running_stack

# Several clients, so the followers stay under the per-client cap on open streams.
API_KEYS = {f"chaos-key-{n}": f"chaos-{n}" for n in range(4)}
# Paced so a generation lasts a few seconds: long enough to be running when a process dies.
STREAMER_TOKENS_PER_SECOND = 25
HEARTBEAT_SECONDS = 5


class ChaosStack(Stack):
    @property
    def keys(self) -> list[str]:
        return list(API_KEYS)


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    env = {
        "SWITCHBOARD_EDGE_API_KEYS": ",".join(f"{k}={c}" for k, c in API_KEYS.items()),
        # The load is modest but bursty (every follower reconnects at once after a kill).
        "SWITCHBOARD_EDGE_RATE_LIMIT_PER_SECOND": "10000",
        "SWITCHBOARD_EDGE_RATE_LIMIT_BURST": "10000",
        "SWITCHBOARD_EDGE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "SWITCHBOARD_INFERENCE_TEST_STREAMER_TOKENS_PER_SECOND": str(STREAMER_TOKENS_PER_SECOND),
    }
    with running_stack(tmp_path_factory.mktemp("chaos"), free_block(), env) as running:
        yield ChaosStack(running.ports, running.state_dir)
