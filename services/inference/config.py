"""Settings of the inference service, read from `SWITCHBOARD_INFERENCE_*` in main().

Every field is one variable: its name upper-cased after the prefix, e.g. `breaker_open_s`
is `SWITCHBOARD_INFERENCE_BREAKER_OPEN_S`; docs/inference.md lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from switchboard.common.settings import Env

PREFIX = "SWITCHBOARD_INFERENCE"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50061  # the worker's default SWITCHBOARD_WORKER_INFERENCE_ADDRESS
    metrics_port: int = 9103
    triton_grpc: str = "127.0.0.1:8001"
    log_level: str = "INFO"
    # Admission bounds, per backend model of each task: running, and waiting for a slot.
    max_concurrent_generations: int = 64
    max_queued_generations: int = 32
    max_concurrent_embeds: int = 64
    max_queued_embeds: int = 256
    max_concurrent_ocr: int = 4
    max_queued_ocr: int = 16
    queue_retry_after_s: float = 1.0
    # Generation deadlines, all from the generation's start.
    first_token_timeout_s: float = 30.0
    inter_token_timeout_s: float = 30.0
    generation_timeout_s: float = 300.0
    # Whole-call deadlines of the unary calls (a shorter client deadline wins).
    embed_timeout_s: float = 30.0
    extract_text_timeout_s: float = 60.0
    # Retries of Embed and ExtractText on backend faults, per candidate model.
    unary_retries: int = 2
    retry_backoff_s: float = 0.05
    retry_max_backoff_s: float = 1.0
    # Texts per Triton request in one Embed call (1: one request per text).
    embed_chunk_size: int = 32
    breaker_window_calls: int = 20
    breaker_window_s: float = 60.0
    breaker_failure_ratio: float = 0.5
    breaker_min_calls: int = 5
    breaker_open_s: float = 30.0
    # Routes the readiness canary exercises (comma-separated names or aliases). The local
    # stack adds test-streamer, on which its jobs and end-to-end tests run.
    canary_routes: str = "default-chat,default-embed"
    canary_interval_s: float = 10.0
    canary_timeout_s: float = 10.0
    # Adds the test doubles (test-streamer, test-fail, ...) to the catalog: for the local
    # stack and the tests, whose Triton holds their folders; production leaves it off.
    test_models: bool = False
    # Pacing for the test-streamer model only (0 = as fast as it can): lets the local mesh
    # and the tests watch a stream unfold, without teaching the public API a test knob.
    test_streamer_tokens_per_second: float = 0.0
    shutdown_grace_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        env, defaults = Env(environ, PREFIX), cls()
        values: dict[str, Any] = {}
        for field in fields(cls):
            name, default = field.name.upper(), getattr(defaults, field.name)
            if isinstance(default, str):
                values[field.name] = env.str(name, default)
            elif isinstance(default, bool):
                values[field.name] = env.bool(name, default)
            elif isinstance(default, int):
                values[field.name] = env.int(name, default)
            else:
                values[field.name] = env.float(name, default)
        settings = cls(**values)
        settings.check()
        return settings

    @property
    def canary_route_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.canary_routes.split(",") if n.strip())

    def check(self) -> None:
        """Fails at start-up, naming the variable, rather than at the first request."""
        at_least = {
            "MAX_QUEUED_GENERATIONS": 0,
            "MAX_QUEUED_EMBEDS": 0,
            "MAX_QUEUED_OCR": 0,
            "UNARY_RETRIES": 0,
            "RETRY_BACKOFF_S": 0,
            "TEST_STREAMER_TOKENS_PER_SECOND": 0,
        }
        for field in fields(self):
            name, value = field.name.upper(), getattr(self, field.name)
            if isinstance(value, (str, bool)):
                continue
            if name in at_least and value < at_least[name]:
                raise ValueError(f"{PREFIX}_{name} must be >= 0, got {value}")
            if name not in at_least and value <= 0:
                raise ValueError(f"{PREFIX}_{name} must be positive, got {value}")
        if not 0 < self.breaker_failure_ratio <= 1:
            raise ValueError(f"{PREFIX}_BREAKER_FAILURE_RATIO must be in (0, 1]")
        if not self.canary_route_names:
            raise ValueError(f"{PREFIX}_CANARY_ROUTES must name at least one route")
