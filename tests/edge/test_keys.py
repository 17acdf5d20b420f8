"""The API key store in a real Valkey: created keys are found, listed and revoked by
fingerprint, and Valkey never holds a raw key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import cast

import pytest
import pytest_asyncio
from valkey.asyncio import Valkey

from switchboard.edge.keys import KEY_PREFIX, KEYS_HASH, KeyStore, digest, fingerprint


@pytest_asyncio.fixture
async def valkey(valkey_url: str) -> AsyncIterator[Valkey]:
    client = Valkey.from_url(valkey_url)
    await client.delete(KEYS_HASH)
    try:
        yield client
    finally:
        await client.aclose()


async def everything_stored(valkey: Valkey) -> bytes:
    """Every key name and value in the database, as one blob to search."""
    blob = b""
    async for name in valkey.scan_iter():
        blob += name
        kind = await valkey.type(name)
        if kind == b"hash":
            fields = await cast(Awaitable[dict[bytes, bytes]], valkey.hgetall(name))
            for field, value in fields.items():
                blob += field + value
        elif kind == b"string":
            blob += await valkey.get(name) or b""
    return blob


@pytest.mark.asyncio
async def test_create_find_list_revoke(valkey: Valkey) -> None:
    store = KeyStore(valkey)
    key, record = await store.create("acme")
    other_key, other = await store.create("acme")
    assert key.startswith(KEY_PREFIX) and len(key) > 40
    assert key != other_key
    assert record.fingerprint == fingerprint(digest(key))
    found = await store.find(digest(key))
    assert found is not None and (found.client, found.digest) == ("acme", digest(key))
    assert await store.find(digest("sb_not-a-key")) is None

    listed = await store.list()
    assert {r.fingerprint for r in listed} == {record.fingerprint, other.fingerprint}
    assert await store.revoke(record.fingerprint)
    assert not await store.revoke(record.fingerprint)
    assert await store.find(digest(key)) is None
    assert await store.find(digest(other_key)) is not None


@pytest.mark.asyncio
async def test_valkey_holds_no_raw_key(valkey: Valkey) -> None:
    keys = [(await KeyStore(valkey).create(client))[0] for client in ("a", "b", "c")]
    stored = await everything_stored(valkey)
    assert digest(keys[0]).encode() in stored, "the search sees the records"
    for key in keys:
        assert key.encode() not in stored
        assert key.removeprefix(KEY_PREFIX).encode() not in stored


@pytest.mark.asyncio
async def test_bad_client_ids_and_fingerprints_are_refused(valkey: Valkey) -> None:
    store = KeyStore(valkey)
    for client in ("", "a/b", "x" * 200, "quote'd"):
        with pytest.raises(ValueError):
            await store.create(client)
    for bad in ("", "abc", "Z" * 16, "0" * 17):
        with pytest.raises(ValueError):
            await store.revoke(bad)
    assert await cast(Awaitable[int], valkey.hlen(KEYS_HASH)) == 0
