"""Schemathesis against the edge's served OpenAPI document, for the OpenAI-compatible
routes, with the stand-in inference service (tests/edge/inference_standin.py) behind it.

Every check runs, positive-data acceptance included: the hand-written schemas promise
exactly what the edge accepts. The job routes need the real planner (a stand-in answers
only canned calls) and run in tests/e2e/test_schemathesis.py against the whole mesh.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from switchboard.edge.server import EdgeServer, build_server

from ..planner.support import serving
from ..schemathesis_cli import run_schemathesis
from .conftest import API_KEY, StandInPlanner, running, settings_for
from .inference_standin import ChatInference

OPENAI_PATHS = "^/v1/(chat|embeddings|models)"


@pytest_asyncio.fixture
async def edge(planner: StandInPlanner) -> AsyncIterator[EdgeServer]:
    async with serving(ChatInference()) as address:
        settings = dataclasses.replace(settings_for(planner.address), inference_address=address)
        async with running(build_server(settings)) as server:
            yield server


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_the_openai_routes_keep_every_promise_of_the_document(
    edge: EdgeServer, tmp_path: Path
) -> None:
    run = await run_schemathesis(
        f"http://127.0.0.1:{edge.port}/openapi.json",
        API_KEY,
        cwd=tmp_path,
        max_examples=25,
        timeout_s=150,
        extra=["--checks", "all", "--include-path-regex", OPENAI_PATHS],
    )

    assert run.returncode == 0, run.summary
    assert "4 selected" in run.output, run.summary
