"""API keys: `Authorization: Bearer <key>` names the calling client.

Keys are held only as SHA-256 digests, so a lookup takes the same path for every key
and the raw keys never sit in memory after startup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from switchboard.common.settings import Secret

from .errors import ApiKeyInvalid


class ApiKeys:
    def __init__(self, clients: Mapping[str, str]) -> None:
        """`clients` maps each API key to its client id."""
        self._by_digest = {_digest(key): client for key, client in clients.items()}

    @classmethod
    def parse(cls, secret: Secret) -> ApiKeys:
        """Reads `key=client_id,key2=client_id2`; a malformed pair stops startup."""
        clients: dict[str, str] = {}
        for number, pair in enumerate(secret.value.split(","), start=1):
            if not pair.strip():
                continue
            key, sep, client = (part.strip() for part in pair.partition("="))
            if not sep or not key or not client:
                # Only the position: the pair itself holds a key.
                raise ValueError(f"API key pair #{number} is not of the form key=client_id")
            clients[key] = client
        return cls(clients)

    def __len__(self) -> int:
        return len(self._by_digest)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys)"

    def client_id(self, authorization: str | None) -> str:
        """The client an Authorization header names; ApiKeyInvalid when it names none."""
        scheme, _, key = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiKeyInvalid("missing API key: send Authorization: Bearer <key>")
        client = self._by_digest.get(_digest(key.strip()))
        if client is None:
            raise ApiKeyInvalid("unknown API key")
        return client


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
