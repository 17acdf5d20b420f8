"""Edge settings, read from `SWITCHBOARD_EDGE_*` environment variables in main()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.common.settings import Env, Secret

PREFIX = "SWITCHBOARD_EDGE"


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    # host:port of the JobService; in the mesh, Envoy's internal gRPC listener.
    planner_address: str
    # `key=client_id` pairs separated by commas; parsed by auth.ApiKeys.
    api_keys: Secret
    log_level: str
    # Longest quiet spell on an SSE stream before a `: heartbeat` comment goes out.
    heartbeat_seconds: float

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
        )
        if not 0 <= settings.port <= 65535:
            raise ValueError(f"{PREFIX}_PORT must be 0..65535, got {settings.port}")
        if settings.heartbeat_seconds <= 0:
            raise ValueError(f"{PREFIX}_HEARTBEAT_SECONDS must be > 0")
        if not settings.planner_address:
            raise ValueError(f"{PREFIX}_PLANNER_ADDRESS must be set")
        return settings
