"""Stream tokens: signed, short-lived credentials that open one job's event stream.

A browser's EventSource cannot send an Authorization header. So POST /v1/jobs answers with
a `Link` to the job's events whose `?token=` names the client, the job and an expiry,
signed with HMAC-SHA256. The token opens that one stream and nothing else, and only until it
expires; an API key in a URL would open everything for as long as the key lives.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

from starlette.datastructures import Headers, QueryParams
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import CLIENT_SCOPE_KEY
from .config import Settings
from .errors import StreamTokenInvalid, error_response
from .routes import RestRoute

log = logging.getLogger(__name__)

# Long enough to follow a long job across reconnects (EventSource reuses the URL).
TOKEN_SECONDS: Final = 3600.0
QUERY_PARAMETER: Final = "token"
# Unix seconds, ASCII digits, bounded before conversion (12 digits outlast any expiry).
_EXPIRES: Final = re.compile(r"[0-9]{1,12}")


class StreamTokens:
    def __init__(
        self, key: bytes, ttl: float = TOKEN_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self._ttl = ttl
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamTokens:
        """The configured key; else one derived from secrets every replica shares, so a token
        issued by one replica opens the stream on another."""
        if settings.stream_token_secret.value:
            return cls(settings.stream_token_secret.value.encode())
        shared = f"{settings.api_keys.value}\0{settings.internal_token.value}"
        if shared == "\0":
            log.warning("no secret to derive stream tokens from; they verify on this replica only")
            return cls(secrets.token_bytes(32))
        return cls(hashlib.sha256(b"switchboard stream token\0" + shared.encode()).digest())

    def issue(self, client: str, job: str) -> str:
        """A token for `job` (`jobs/{id}`) of `client`."""
        expires = int(self._clock() + self._ttl)
        return f"{expires}.{_b64(client.encode())}.{_b64(self._mac(expires, client, job))}"

    def verify(self, token: str, job: str) -> str:
        """The client a valid, unexpired token for `job` names; StreamTokenInvalid otherwise."""
        expires, _, rest = token.partition(".")
        client_part, _, mac_part = rest.partition(".")
        try:
            client = _unb64(client_part).decode()
            mac = _unb64(mac_part)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise StreamTokenInvalid("malformed stream token") from None
        if not _EXPIRES.fullmatch(expires) or not client:
            raise StreamTokenInvalid("malformed stream token")
        if not hmac.compare_digest(mac, self._mac(int(expires), client, job)):
            raise StreamTokenInvalid("stream token is not valid for this job")
        if int(expires) < self._clock():
            raise StreamTokenInvalid("stream token expired; create a new one with the API key")
        return client

    def _mac(self, expires: int, client: str, job: str) -> bytes:
        message = f"{expires}\n{client}\n{job}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()


class StreamTokenAuth:
    """Admits a GET of a job's event stream that carries `?token=` and no Authorization
    header: the client the token names goes where the Admission middleware (next in line)
    takes it from. Any other request passes through untouched."""

    def __init__(self, app: ASGIApp, *, tokens: StreamTokens, watch: RestRoute) -> None:
        self.app = app
        self.tokens = tokens
        self.path, _, _ = compile_path(watch.path)
        [self.binding] = watch.bindings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = self.path.match(scope["path"]) if scope["type"] == "http" else None
        if match and scope["method"] == "GET" and "authorization" not in Headers(scope=scope):
            token = QueryParams(scope["query_string"]).get(QUERY_PARAMETER)
            if token is not None:
                job = self.binding.template.format_map(match.groupdict())
                try:
                    scope[CLIENT_SCOPE_KEY] = self.tokens.verify(token, job)
                except StreamTokenInvalid as exc:
                    await error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
