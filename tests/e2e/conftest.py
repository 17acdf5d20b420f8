"""One real mesh per test session, started by the same launcher as `switchboard up`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchboard.launcher import stack
from switchboard.launcher.ports import Ports, free_block

from ..stack import start_stack

API_KEY = "sb-dev-key"
# test-streamer paced like the real chat model (about 49 tokens/s here), so a stream lasts
# long enough to be followed, dropped and resumed (test_browser_sse).
STREAMER_TOKENS_PER_SECOND = 50


@dataclass(frozen=True)
class Mesh:
    ports: Ports
    state_dir: Path

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def internal_token(self) -> str:
        """What a trusted internal caller sends as x-switchboard-internal to the planner."""
        return stack.read_internal_token(self.state_dir)

    def log(self, name: str) -> str:
        return (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")

    def state(self) -> dict[str, object]:
        data = json.loads((self.state_dir / "state.json").read_text())
        assert isinstance(data, dict)
        return data


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    state_dir = tmp_path_factory.mktemp("mesh")
    ports = free_block()
    with pytest.MonkeyPatch.context() as env:
        # The launcher hands its environment to every process it starts.
        rate = str(STREAMER_TOKENS_PER_SECOND)
        env.setenv("SWITCHBOARD_INFERENCE_TEST_STREAMER_TOKENS_PER_SECOND", rate)
        proc = start_stack(state_dir, ports)
    try:
        yield Mesh(ports, state_dir)
    finally:
        proc.stop()
