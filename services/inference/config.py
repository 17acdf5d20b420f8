"""Settings of the inference service, read from `SWITCHBOARD_INFERENCE_*` in main()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.common.settings import Env

PREFIX = "SWITCHBOARD_INFERENCE"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50061  # the worker's default SWITCHBOARD_WORKER_INFERENCE_ADDRESS
    metrics_port: int = 9103
    triton_grpc: str = "127.0.0.1:8001"
    log_level: str = "INFO"
    max_concurrent_generations: int = 64
    first_token_timeout_s: float = 30.0
    generation_timeout_s: float = 300.0
    # Pacing for the test-streamer model only (0 = as fast as it can): lets the local mesh
    # and the tests watch a stream unfold, without teaching the public API a test knob.
    test_streamer_tokens_per_second: float = 0.0
    shutdown_grace_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        env, d = Env(environ, PREFIX), cls()
        settings = cls(
            host=env.str("HOST", d.host),
            port=env.int("PORT", d.port),
            metrics_port=env.int("METRICS_PORT", d.metrics_port),
            triton_grpc=env.str("TRITON_GRPC", d.triton_grpc),
            log_level=env.str("LOG_LEVEL", d.log_level),
            max_concurrent_generations=env.int(
                "MAX_CONCURRENT_GENERATIONS", d.max_concurrent_generations
            ),
            first_token_timeout_s=env.float("FIRST_TOKEN_TIMEOUT_S", d.first_token_timeout_s),
            generation_timeout_s=env.float("GENERATION_TIMEOUT_S", d.generation_timeout_s),
            test_streamer_tokens_per_second=env.float(
                "TEST_STREAMER_TOKENS_PER_SECOND", d.test_streamer_tokens_per_second
            ),
            shutdown_grace_s=env.float("SHUTDOWN_GRACE_S", d.shutdown_grace_s),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Fails at start-up, naming the variable, rather than at the first request."""
        positive = {
            "MAX_CONCURRENT_GENERATIONS": self.max_concurrent_generations,
            "FIRST_TOKEN_TIMEOUT_S": self.first_token_timeout_s,
            "GENERATION_TIMEOUT_S": self.generation_timeout_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{PREFIX}_{name} must be positive, got {value}")
        if self.test_streamer_tokens_per_second < 0:
            raise ValueError(f"{PREFIX}_TEST_STREAMER_TOKENS_PER_SECOND must be >= 0")
