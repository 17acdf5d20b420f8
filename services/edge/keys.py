"""API keys kept in Valkey: written by `switchboard keys`, read by every edge replica.

A key is `sb_` + 32 random bytes (urlsafe base64) and only its SHA-256 is stored. The key is
high-entropy, so a fast hash is the right one: slow password hashes (argon2, bcrypt) exist to
make guessing low-entropy secrets expensive, and there is nothing here to guess. A copy of
the store yields no usable key.

Hash `sb:api-keys`: field = the key's fingerprint (the first 16 hex digits of its digest),
value = JSON `{"client", "digest", "created"}`. The fingerprint finds the record; the whole
digest is then compared in constant time. The fingerprint names a key in `keys list` and
`keys revoke` without revealing it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, cast

from valkey.asyncio import Valkey

KEYS_HASH: Final = "sb:api-keys"
KEY_PREFIX: Final = "sb_"
FINGERPRINT_HEX: Final = 16
# The planner's rule for client ids (switchboard.planner.ids): a key for any other id
# would authenticate requests the planner then refuses.
_CLIENT_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_FINGERPRINT: Final = re.compile(rf"^[0-9a-f]{{{FINGERPRINT_HEX}}}$")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(key_digest: str) -> str:
    return key_digest[:FINGERPRINT_HEX]


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise ValueError(f"not a valid client id: {client_id!r}")
    return client_id


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    client: str
    digest: str
    created: str

    def to_json(self) -> str:
        fields = {"client": self.client, "digest": self.digest, "created": self.created}
        return json.dumps(fields, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, field: str, raw: bytes | str) -> KeyRecord:
        data = json.loads(raw)
        return cls(field, str(data["client"]), str(data["digest"]), str(data["created"]))


class KeyStore:
    """The keys in Valkey. Calls raise valkey's ConnectionError/TimeoutError when it is down."""

    def __init__(self, valkey: Valkey) -> None:
        self._valkey = valkey

    async def create(self, client: str) -> tuple[str, KeyRecord]:
        """A new key for `client`: (the key, shown once and never stored; its record)."""
        check_client_id(client)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        while True:
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            key_digest = digest(key)
            record = KeyRecord(fingerprint(key_digest), client, key_digest, created)
            # HSETNX: two keys sharing 64 bits of digest is all but impossible, never silent.
            added = self._valkey.hsetnx(KEYS_HASH, record.fingerprint, record.to_json())
            if await cast(Awaitable[int], added):
                return key, record

    async def find(self, key_digest: str) -> KeyRecord | None:
        """The record whose fingerprint matches; the caller compares the whole digest."""
        raw = await cast(
            Awaitable[bytes | None], self._valkey.hget(KEYS_HASH, fingerprint(key_digest))
        )
        return None if raw is None else KeyRecord.from_json(fingerprint(key_digest), raw)

    async def list(self) -> list[KeyRecord]:
        found = await cast(Awaitable[dict[bytes, bytes]], self._valkey.hgetall(KEYS_HASH))
        records = [KeyRecord.from_json(f.decode(), raw) for f, raw in found.items()]
        return sorted(records, key=lambda r: (r.client, r.created, r.fingerprint))

    async def revoke(self, key_fingerprint: str) -> bool:
        """Deletes the key; False when no key has this fingerprint."""
        if not _FINGERPRINT.match(key_fingerprint):
            raise ValueError(f"a fingerprint is {FINGERPRINT_HEX} hex digits (see `keys list`)")
        removed = self._valkey.hdel(KEYS_HASH, key_fingerprint)
        return bool(await cast(Awaitable[int], removed))
