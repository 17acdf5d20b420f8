"""scripts/bootstrap, which every make target runs first: two at once (`make up` in one
terminal, `make status` in another) take turns instead of racing to create .venv.

The script runs in a scratch checkout whose dependency stamp is up to date, so once it may
go on it ends at once without installing anything."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HASHED = ("pyproject.toml", "package.json", "package-lock.json", "scripts/bootstrap")

pytestmark = pytest.mark.skipif(
    shutil.which("flock") is None or not Path("/usr/bin/chromium").exists(),
    reason="needs flock, and Debian's chromium (else the script would install it)",
)


def _checkout(tmp_path: Path) -> Path:
    """A checkout with the real dependency files and script, and a current stamp."""
    for name in HASHED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    digest = hashlib.sha256(b"".join((tmp_path / n).read_bytes() for n in HASHED)).hexdigest()
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".bootstrap-stamp").write_text(digest + "\n")
    buf = tmp_path / "node_modules" / ".bin" / "buf"
    buf.parent.mkdir(parents=True)
    buf.write_text("#!/bin/sh\n")
    buf.chmod(0o755)
    return tmp_path


def test_an_up_to_date_checkout_does_nothing(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    done = subprocess.run(
        [str(checkout / "scripts" / "bootstrap")], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stderr


def test_a_second_bootstrap_waits_for_the_first(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    (checkout / ".switchboard").mkdir()
    lock = os.open(checkout / ".switchboard" / "bootstrap.lock", os.O_WRONLY | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a bootstrap in progress
        second = subprocess.Popen(
            [str(checkout / "scripts" / "bootstrap")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        assert second.poll() is None, "it went on while another bootstrap held the lock"
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert second.wait(timeout=30) == 0
    finally:
        os.close(lock)
