"""Schemathesis against the whole served OpenAPI document, through Envoy's public listener,
with the real planner, Temporal, inference service and Triton behind the edge.

No 5xx, no undocumented status or content type, every response as its schema says, bad
input refused, no operation open without a key. Schema-valid input must be accepted on the
OpenAI routes (their schemas are exact); the job routes' rules beyond JSON Schema (the
pipeline catalog, CEL rules) make a 400 there a correct answer, so that one check is off
for them. Requests stay under the dev client's rate limit (20/s, burst 40).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ..schemathesis_cli import run_schemathesis
from .conftest import API_KEY, Mesh

pytestmark = pytest.mark.e2e

# Every check is on by default; checks named on the command line would override these.
CONFIG = """
# Envoy's HTTP/1 parser answers 400 itself to a method it does not know (QUERY); the
# edge's own 405s are checked in tests/edge/test_schemathesis.py.
[checks.unsupported_method]
enabled = false

[[operations]]
include-path-regex = "^/v1/(jobs|pipelines|sessions)"
checks.positive_data_acceptance.enabled = false

# Each completion here is a real generation of up to 4096 tokens (80 s at SmolLM2's speed):
# the documented example only; the stand-in behind tests/edge/test_schemathesis.py takes
# the generated ones.
[[operations]]
include-path = "/v1/chat/completions"
phases.coverage.enabled = false
phases.fuzzing.enabled = false
"""


@pytest.mark.timeout(240)
def test_the_served_document_holds_against_the_real_mesh(mesh: Mesh, tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    run = asyncio.run(
        run_schemathesis(
            f"{mesh.public}/openapi.json",
            API_KEY,
            cwd=tmp_path,
            max_examples=8,
            timeout_s=200,
            # Stateful runs feed GET /v1/models' ids into real generations too.
            extra=["--rate-limit", "15/s", "--phases", "examples,coverage,fuzzing"],
        )
    )

    assert run.returncode == 0, run.summary
    assert "Tested: 0" not in run.output, run.summary
