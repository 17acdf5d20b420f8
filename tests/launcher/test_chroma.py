"""Chroma in the stack: started by the launcher like every process, ready when its heartbeat
answers, keeping its data in the state folder, before the worker that uses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from switchboard.launcher import checks, stack
from switchboard.launcher.ports import Ports, free_block

from ..stack import free_ports, start_stack


async def _beats(port: int) -> bool:
    return await checks.chroma_heartbeat(port)()


def test_the_worker_needs_chroma_and_is_told_where_it_is(tmp_path: Path) -> None:
    ports = Ports.at(30000)
    specs = {s.name: s for s in stack.build(ports, tmp_path, {"HOME": "/h"})}
    chroma, worker = specs["chroma"], specs["worker"]

    assert "chroma" in worker.needs
    assert worker.env["SWITCHBOARD_WORKER_CHROMA_URL"] == f"http://127.0.0.1:{ports.chroma}"
    assert chroma.env["ANONYMIZED_TELEMETRY"] == "False"
    assert chroma.env["HOME"] == "/h"
    argv = chroma.argv()
    assert argv[1:] == ["run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1",
                        "--port", str(ports.chroma)]  # fmt: skip
    names = [s.name for s in stack.select(list(specs.values()), ["worker"])]
    assert names == ["valkey", "temporal", "chroma", "worker"]


def test_up_only_chroma_serves_its_heartbeat_and_keeps_data_in_the_state_folder(
    tmp_path: Path,
) -> None:
    ports = free_block()
    proc = start_stack(tmp_path, ports, only=("chroma",))
    try:
        assert asyncio.run(_beats(ports.chroma))
        version = httpx.get(f"http://127.0.0.1:{ports.chroma}/api/v2/version", timeout=5)
        assert version.status_code == 200
        assert (tmp_path / "chroma").is_dir()
        assert "Frontend server listening" in proc.log("chroma")
    finally:
        proc.stop()
    assert not asyncio.run(_beats(ports.chroma))


@pytest.mark.asyncio
async def test_the_heartbeat_check_fails_where_chroma_is_not() -> None:
    (port,) = free_ports(1)
    assert not await checks.chroma_heartbeat(port)()
