"""The edge's own import contracts ([tool.importlinter] in pyproject.toml): a cycle anywhere
in the edge, or one room importing the other, fails `lint-imports` naming the contract."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.contract.test_import_contracts import PACKAGE, ROOT, _lint_imports

CYCLE = "edge: no import cycles (TYPE_CHECKING imports count)"
OPENAI_TO_JOBS = "edge: the OpenAI package imports nothing of the job API"
JOBS_TO_OPENAI = "edge: the job API imports nothing of the OpenAI package"
EDITS = [
    # The cycle this contract replaced: subscription naming hub.Channel for the type checker.
    ("subscription.py", "if TYPE_CHECKING:\n    from .hub import Channel  # noqa", CYCLE),
    ("openai/endpoints.py", "from ..handlers import JobApiState  # noqa", OPENAI_TO_JOBS),
    # Indirect: the job API reaching the OpenAI package through a neutral module.
    ("errors.py", "from .openai import wire  # noqa", JOBS_TO_OPENAI),
]


@pytest.mark.parametrize(("module", "line", "contract"), EDITS)
def test_a_forbidden_edge_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    copy = tmp_path / "switchboard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    edited = copy / "edge" / module
    header = "from typing import TYPE_CHECKING\n" if "TYPE_CHECKING" in line else ""
    edited.write_text(edited.read_text() + f"\n{header}{line}\n")

    done = _lint_imports(tmp_path, pythonpath=tmp_path)

    out = done.stdout
    assert done.returncode != 0, out
    assert f"{contract} BROKEN" in out, out
    others = {CYCLE, OPENAI_TO_JOBS, JOBS_TO_OPENAI} - {contract}
    if contract != JOBS_TO_OPENAI:
        assert all(f"{other} KEPT" in out for other in others), out
