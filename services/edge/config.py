"""Edge settings, read from `SWITCHBOARD_EDGE_*` environment variables in main()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from switchboard.common.settings import Env, Secret

from .ratelimit import Limits

PREFIX = "SWITCHBOARD_EDGE"


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    # host:port of the JobService; in the mesh, Envoy's internal gRPC listener.
    planner_address: str
    # `key=client_id` or `sha256:<hex>=client_id` pairs separated by commas; auth.ApiKeys.
    api_keys: Secret
    log_level: str
    # Longest quiet spell on an SSE stream before a `: heartbeat` comment goes out.
    heartbeat_seconds: float
    # Valkey holding the API keys of `switchboard keys` and the rate-limit buckets; empty:
    # keys only from API_KEYS and no rate limits.
    valkey_url: str = ""
    # How long a key found in Valkey is believed: a revoke takes effect within this.
    key_cache_seconds: float = 5.0
    rate_limits: Limits = field(default_factory=lambda: Limits(None))
    # Sent as `x-switchboard-internal` so the planner believes our `x-client-id`.
    internal_token: Secret = field(default_factory=lambda: Secret(""))
    # Longest `Prefer: wait=N` that POST /v1/jobs honours; a longer N is cut to this.
    max_wait_seconds: float = 10.0
    # Longest life of one SSE response: the edge then ends it and the client resumes with
    # Last-Event-ID, which spreads long streams across replicas.
    sse_max_seconds: float = 300.0
    # Browser origins (scheme://host:port) allowed by CORS; none: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    # Signs the `?token=` of event-stream URLs; empty: derived from API_KEYS and
    # INTERNAL_TOKEN, which every replica shares (tokens.StreamTokens).
    stream_token_secret: Secret = field(default_factory=lambda: Secret(""))
    # host:port of the InferenceService (the OpenAI routes, /v1/chat/ws); in the mesh,
    # Envoy's internal gRPC listener, which hashes on x-session-id.
    inference_address: str = "127.0.0.1:50061"
    # Streams (SSE job streams, streamed chat completions, chat sockets) one client may hold
    # open at once over all replicas (counted in Valkey); 0: no cap.
    max_streams_per_client: int = 32
    # How long a stream's slot outlives the edge that stops renewing it (a killed edge).
    stream_lease_seconds: float = 30.0

    @staticmethod
    def from_env(environ: Mapping[str, str]) -> Settings:
        env = Env(environ, PREFIX)
        settings = Settings(
            host=env.str("HOST", "127.0.0.1"),
            port=env.int("PORT", 8080),
            planner_address=env.str("PLANNER_ADDRESS", "127.0.0.1:50051"),
            api_keys=env.secret("API_KEYS"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            heartbeat_seconds=env.float("HEARTBEAT_SECONDS", 15.0),
            valkey_url=env.str("VALKEY_URL", ""),
            key_cache_seconds=env.float("KEY_CACHE_SECONDS", 5.0),
            rate_limits=Limits.parse(
                env.float("RATE_LIMIT_PER_SECOND", 20.0),
                env.int("RATE_LIMIT_BURST", 40),
                env.str("RATE_LIMIT_CLIENTS", ""),
            ),
            internal_token=env.secret("INTERNAL_TOKEN"),
            max_wait_seconds=env.float("MAX_WAIT_SECONDS", 10.0),
            sse_max_seconds=env.float("SSE_MAX_SECONDS", 300.0),
            cors_origins=tuple(
                o.strip() for o in env.str("CORS_ORIGINS", "").split(",") if o.strip()
            ),
            stream_token_secret=env.secret("STREAM_TOKEN_SECRET"),
            inference_address=env.str("INFERENCE_ADDRESS", "127.0.0.1:50061"),
            max_streams_per_client=env.int("MAX_STREAMS_PER_CLIENT", 32),
            stream_lease_seconds=env.float("STREAM_LEASE_SECONDS", 30.0),
        )
        if not 0 <= settings.port <= 65535:
            raise ValueError(f"{PREFIX}_PORT must be 0..65535, got {settings.port}")
        if settings.heartbeat_seconds <= 0:
            raise ValueError(f"{PREFIX}_HEARTBEAT_SECONDS must be > 0")
        if settings.key_cache_seconds < 0:
            raise ValueError(f"{PREFIX}_KEY_CACHE_SECONDS must be >= 0")
        if settings.max_wait_seconds < 0:
            raise ValueError(f"{PREFIX}_MAX_WAIT_SECONDS must be >= 0")
        if settings.sse_max_seconds <= 0:
            raise ValueError(f"{PREFIX}_SSE_MAX_SECONDS must be > 0")
        if settings.max_streams_per_client < 0:
            raise ValueError(f"{PREFIX}_MAX_STREAMS_PER_CLIENT must be >= 0")
        if settings.stream_lease_seconds <= 0:
            raise ValueError(f"{PREFIX}_STREAM_LEASE_SECONDS must be > 0")
        if not settings.planner_address:
            raise ValueError(f"{PREFIX}_PLANNER_ADDRESS must be set")
        if not settings.inference_address:
            raise ValueError(f"{PREFIX}_INFERENCE_ADDRESS must be set")
        return settings
