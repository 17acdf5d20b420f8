"""One real mesh per test session, started by the same launcher as `switchboard up`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.launcher.ports import free_block

from ..stack import Stack, running_stack

API_KEY = "sb-dev-key"
# test-streamer paced like the real chat model (about 49 tokens/s here), so a stream lasts
# long enough to be followed, dropped and resumed (test_browser_sse).
STREAMER_TOKENS_PER_SECOND = 50
# The session's mesh is a whole stack as tests/stack.py runs it.
Mesh = Stack


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    rate = str(STREAMER_TOKENS_PER_SECOND)
    env = {"SWITCHBOARD_INFERENCE_TEST_STREAMER_TOKENS_PER_SECOND": rate}
    with running_stack(tmp_path_factory.mktemp("mesh"), free_block(), env) as mesh:
        yield mesh
