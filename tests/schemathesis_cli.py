"""Schemathesis, run as its own CLI in a subprocess against a served `/openapi.json`.

A subprocess, not the pytest plugin: the edge under test may run in the test's own event
loop, which the plugin's blocking requests would stall. The run is bounded (examples per
operation, a fixed seed, per-request timeout, a wall-clock limit); it writes its caches
(.hypothesis, .schemathesis) into `cwd`, so give it a temporary directory.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SEED = 20261123


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str

    @property
    def summary(self) -> str:
        """The report's tail: failures with their reproducing curl commands, then totals."""
        return self.output[-12_000:]


async def run_schemathesis(
    schema_url: str,
    api_key: str,
    *,
    cwd: Path,
    max_examples: int,
    timeout_s: float,
    extra: Sequence[str] = (),
) -> Run:
    argv = [
        sys.executable, "-m", "schemathesis.cli", "run", schema_url,
        "--header", f"Authorization: Bearer {api_key}",
        "--max-examples", str(max_examples),
        "--seed", str(SEED),
        "--generation-database", "none",
        "--request-timeout", "20",
        "--workers", "1",
        "--no-color",
        *extra,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    stdout = proc.stdout
    assert stdout is not None
    chunks: list[bytes] = []

    async def read() -> None:
        # Read as it comes, so a run cut short still shows how far it got.
        while chunk := await stdout.read(65536):
            chunks.append(chunk)

    try:
        await asyncio.wait_for(asyncio.gather(read(), proc.wait()), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        partial = b"".join(chunks).decode(errors="replace")[-8000:]
        raise AssertionError(f"schemathesis ran past {timeout_s} s:\n{partial}") from None
    return Run(proc.returncode or 0, b"".join(chunks).decode(errors="replace"))
