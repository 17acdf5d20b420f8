"""The architecture contracts ([tool.importlinter] in pyproject.toml) hold on the real tree, and
`lint-imports` fails, naming the contract, once one import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import switchboard

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(switchboard.__file__).resolve().parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_edge_module_importing_the_launcher_breaks_the_contracts(tmp_path: Path) -> None:
    # A copy of the package, first on the path, with one import the contracts forbid.
    copy = tmp_path / "switchboard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    codec = copy / "edge" / "codec.py"
    codec.write_text(codec.read_text() + "\nfrom switchboard.launcher import ports  # noqa\n")

    done = _lint_imports(tmp_path, pythonpath=tmp_path)

    assert done.returncode != 0
    out = done.stdout
    assert "services import neither the launcher nor the cli BROKEN" in out, out
    assert "switchboard.edge.codec -> switchboard.launcher.ports" in out, out
    assert "services are independent of each other KEPT" in out, out


def test_a_workflow_module_importing_valkey_breaks_the_planner_contracts(tmp_path: Path) -> None:
    # The workflow side runs in Temporal's sandbox: no I/O client may reach it.
    copy = tmp_path / "switchboard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    chatflow = copy / "planner" / "flows" / "chatflow.py"
    chatflow.write_text(chatflow.read_text() + "\nfrom valkey.asyncio import Valkey  # noqa\n")

    done = _lint_imports(tmp_path, pythonpath=tmp_path)

    assert done.returncode != 0
    out = done.stdout
    assert "planner: the workflow side and the shared code do no I/O BROKEN" in out, out
    assert "switchboard.planner.flows.chatflow -> valkey" in out, out
    assert "planner: no import cycles (TYPE_CHECKING imports count) KEPT" in out, out
