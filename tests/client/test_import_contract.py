"""The client's place in the architecture contracts: no service imports it, and it imports
nothing but api and common (`lint-imports` on a copy of the tree with one such import)."""

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


def _broken_copy(tmp_path: Path, module: str, line: str) -> str:
    """lint-imports' report on a copy of the package with `line` appended to `module`."""
    copy = tmp_path / "switchboard"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    done = subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"],
        cwd=tmp_path,
        env=dict(os.environ, NO_COLOR="1", PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    return done.stdout


def test_a_service_importing_the_client_breaks_the_layers(tmp_path: Path) -> None:
    out = _broken_copy(tmp_path, "edge/codec.py", "from switchboard.client import JobsClient")
    assert (
        "layers: cli > commands > launcher > services, client > common > api (no cycles) BROKEN"
        in out
    ), out
    assert "switchboard.edge.codec -> switchboard.client" in out, out
    assert "the client imports only api and common KEPT" in out, out


def test_the_client_importing_the_launcher_breaks_its_contract(tmp_path: Path) -> None:
    out = _broken_copy(tmp_path, "client/jobs.py", "from switchboard.launcher import ports")
    assert "the client imports only api and common BROKEN" in out, out
    assert "switchboard.client.jobs -> switchboard.launcher.ports" in out, out
