"""`switchboard keys` against a real Valkey and a real edge process: a created key works,
`list` shows it by fingerprint only, a revoke lands within the edge's cache TTL, and the raw
key appears in no log line."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import StandInPlanner
from .processes import edges

CACHE_SECONDS = 1.0


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.cli",
        "keys",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_create_use_list_revoke(
    planner: StandInPlanner, valkey_url: str, tmp_path: Path
) -> None:
    client = f"acme-{uuid.uuid4().hex[:8]}"
    code, out, err = await cli("create", "--client", client, "--valkey-url", valkey_url)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("sb_") and "\n" not in key
    assert key not in err
    fingerprint = err.split()[1]

    env = {
        "SWITCHBOARD_EDGE_PLANNER_ADDRESS": planner.address,
        "SWITCHBOARD_EDGE_VALKEY_URL": valkey_url,
        "SWITCHBOARD_EDGE_KEY_CACHE_SECONDS": str(CACHE_SECONDS),
        "SWITCHBOARD_EDGE_LOG_LEVEL": "DEBUG",
    }
    auth = {"Authorization": f"Bearer {key}"}
    async with edges(tmp_path, env) as (edge,), httpx.AsyncClient(timeout=10) as http:
        listed = await http.get(f"{edge.url}/v1/jobs", headers=auth)
        assert listed.status_code == 200, listed.text
        assert planner.calls[-1].metadata["x-client-id"] == client
        wrong = await http.get(f"{edge.url}/v1/jobs", headers={"Authorization": f"Bearer {key}x"})
        assert wrong.status_code == 401

        code, out, err = await cli("list", "--valkey-url", valkey_url)
        assert code == 0, err
        [line] = [x for x in out.splitlines() if fingerprint in x]
        assert client in line
        assert key not in out + err

        code, out, err = await cli("revoke", fingerprint, "--valkey-url", valkey_url)
        assert code == 0, err
        revoked_at = time.monotonic()
        while (await http.get(f"{edge.url}/v1/jobs", headers=auth)).status_code != 401:
            assert time.monotonic() - revoked_at < CACHE_SECONDS + 2.0, "revoke did not land"
            await asyncio.sleep(0.05)
        assert (await cli("revoke", fingerprint, "--valkey-url", valkey_url))[0] == 1
        logs = edge.text()
    assert '"msg": "request"' in logs, "the edge logged the requests"
    assert key not in logs
    assert key.removeprefix("sb_") not in logs


@pytest.mark.asyncio
async def test_cli_refuses_bad_input_and_an_absent_valkey(valkey_url: str) -> None:
    code, out, err = await cli("create", "--client", "a/b", "--valkey-url", valkey_url)
    assert (code, out) == (2, "")
    assert "client id" in err
    code, _, err = await cli("revoke", "nope", "--valkey-url", valkey_url)
    assert code == 2 and "fingerprint" in err
    code, _, err = await cli("list", "--valkey-url", "valkey://127.0.0.1:9/0")
    assert code == 1 and "cannot reach Valkey" in err
