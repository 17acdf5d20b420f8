"""API keys: `Authorization: Bearer <key>` names the calling client.

Keys come from two places: the environment (`SWITCHBOARD_EDGE_API_KEYS`, for static setups
and the local stack's dev key) and Valkey (`switchboard keys create`, shared by every
replica; see keys.py). Either way only SHA-256 digests are held: a key is hashed as it
arrives, a record is found by the digest's fingerprint and the whole digest is compared with
`hmac.compare_digest`. Raw keys never reach a log line or a repr.

Valkey answers are cached per process for a few seconds (bounded, least recently used out
first), so a revoke takes effect within that TTL. While Valkey is unreachable, a key seen
before keeps working from the cache; an unseen one gets 503.

Endpoints read the client the Admission middleware found with `authenticated_client(scope)`.
`ApiKeys.client_id` (synchronous) also knows the key the middleware admitted for the request
at hand, so endpoints written against it accept Valkey's keys too.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from valkey import exceptions as valkey_errors

from switchboard.common.settings import Secret

from .errors import ApiKeyInvalid, KeyStoreUnavailable
from .keys import KeyStore, digest, fingerprint

log = logging.getLogger(__name__)

# Where the Admission middleware leaves the authenticated client id in the ASGI scope.
CLIENT_SCOPE_KEY: Final = "switchboard.client_id"
DIGEST_PREFIX: Final = "sha256:"
_HEX_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")
# (digest, client) of the key admitted for the current request; each request is its own task.
_admitted: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "admitted_key", default=("", "")
)


class ApiKeys:
    """Keys from the environment, held as digests."""

    def __init__(self, digests: Mapping[str, str]) -> None:
        """`digests` maps each key's SHA-256 (hex) to its client id."""
        self._by_fingerprint = {fingerprint(d): (d, client) for d, client in digests.items()}

    @classmethod
    def parse(cls, secret: Secret) -> ApiKeys:
        """Reads `key=client` or `sha256:<hex digest of key>=client` pairs, comma-separated;
        a malformed pair stops startup."""
        digests: dict[str, str] = {}
        for number, pair in enumerate(secret.value.split(","), start=1):
            if not pair.strip():
                continue
            key, sep, client = (part.strip() for part in pair.rpartition("="))
            if not sep or not key or not client:
                # Only the position: the pair itself holds a key.
                raise ValueError(f"API key pair #{number} is not of the form key=client_id")
            if key.startswith(DIGEST_PREFIX):
                key_digest = key.removeprefix(DIGEST_PREFIX).lower()
                if not _HEX_DIGEST.match(key_digest):
                    raise ValueError(f"API key pair #{number}: sha256: needs 64 hex digits")
            else:
                key_digest = digest(key)
            digests[key_digest] = client
        return cls(digests)

    def __len__(self) -> int:
        return len(self._by_fingerprint)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys)"

    def find(self, key_digest: str) -> str | None:
        """The client of the key with this digest, or None."""
        held = self._by_fingerprint.get(fingerprint(key_digest))
        if held is None or not hmac.compare_digest(held[0], key_digest):
            return None
        return held[1]

    def client_id(self, authorization: str | None) -> str:
        """The client an Authorization header names among these keys or the key admitted for
        this request; else ApiKeyInvalid."""
        key_digest = digest(bearer_key(authorization))
        client = self.find(key_digest)
        admitted_digest, admitted_client = _admitted.get()
        if client is None and hmac.compare_digest(admitted_digest, key_digest):
            client = admitted_client
        if client is None:
            raise ApiKeyInvalid("unknown API key")
        return client


def bearer_key(authorization: str | None) -> str:
    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiKeyInvalid("missing API key: send Authorization: Bearer <key>")
    return key.strip()


@dataclass
class _Cached:
    client: str
    expires: float


class Authenticator:
    """Environment keys first, then Valkey's through a small TTL cache."""

    def __init__(
        self,
        static: ApiKeys,
        store: KeyStore | None,
        *,
        cache_seconds: float = 5.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = static
        self._store = store
        self._ttl = cache_seconds
        self._size = cache_size
        self._clock = clock
        # Keyed by digest, so not even the cache holds a raw key.
        self._cache: OrderedDict[str, _Cached] = OrderedDict()

    def __repr__(self) -> str:
        source = "env+valkey" if self._store else "env"
        return f"Authenticator({source}, {len(self._static)} env keys)"

    async def client_id(self, authorization: str | None) -> str:
        key_digest = digest(bearer_key(authorization))
        client = await self._client_of(key_digest)
        _admitted.set((key_digest, client))
        return client

    async def _client_of(self, key_digest: str) -> str:
        client = self._static.find(key_digest)
        if client is not None:
            return client
        if self._store is None:
            raise ApiKeyInvalid("unknown API key")
        cached = self._cache.get(key_digest)
        now = self._clock()
        if cached is not None and cached.expires > now:
            self._cache.move_to_end(key_digest)
            return cached.client
        return await self._look_up(key_digest, cached, now)

    async def _look_up(self, key_digest: str, cached: _Cached | None, now: float) -> str:
        assert self._store is not None
        try:
            record = await self._store.find(key_digest)
        except valkey_errors.ValkeyError as e:
            if cached is not None:
                log.warning("API key checked from a stale cache: Valkey did not answer")
                return cached.client
            raise KeyStoreUnavailable("API keys cannot be checked right now; retry") from e
        if record is None or not hmac.compare_digest(record.digest, key_digest):
            self._cache.pop(key_digest, None)
            raise ApiKeyInvalid("unknown API key")
        self._cache[key_digest] = _Cached(record.client, now + self._ttl)
        self._cache.move_to_end(key_digest)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return record.client


def authenticated_client(scope: MutableMapping[str, Any]) -> str:
    """The client id the Admission middleware found for this request; refuses without one,
    so a route the middleware did not cover fails closed."""
    client = scope.get(CLIENT_SCOPE_KEY)
    if not isinstance(client, str) or not client:
        raise ApiKeyInvalid("missing API key: send Authorization: Bearer <key>")
    return client
