"""Settings of the planner server (SWITCHBOARD_PLANNER_*) and its worker (SWITCHBOARD_WORKER_*)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.common.settings import Env

DEFAULT_TASK_QUEUE = "switchboard-jobs"


@dataclass(frozen=True)
class Settings:
    """The planner's gRPC server (JobService)."""

    host: str
    port: int
    metrics_port: int
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    valkey_url: str
    log_level: str
    heartbeat_seconds: float
    grace_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        env = Env(environ, "SWITCHBOARD_PLANNER")
        return cls(
            host=env.str("HOST", "127.0.0.1"),
            port=env.int("PORT", 50051),
            metrics_port=env.int("METRICS_PORT", 9101),
            temporal_address=env.str("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=env.str("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.str("TASK_QUEUE", DEFAULT_TASK_QUEUE),
            valkey_url=env.str("VALKEY_URL", "valkey://127.0.0.1:6379/0"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            heartbeat_seconds=env.float("HEARTBEAT_SECONDS", 15.0),
            grace_seconds=env.float("GRACE_SECONDS", 5.0),
        )


@dataclass(frozen=True)
class WorkerSettings:
    """The Temporal worker that runs JobWorkflow and its activities."""

    metrics_port: int
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    valkey_url: str
    inference_address: str
    log_level: str
    heartbeat_throttle_seconds: float
    grace_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        env = Env(environ, "SWITCHBOARD_WORKER")
        return cls(
            metrics_port=env.int("METRICS_PORT", 9102),
            temporal_address=env.str("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=env.str("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.str("TASK_QUEUE", DEFAULT_TASK_QUEUE),
            valkey_url=env.str("VALKEY_URL", "valkey://127.0.0.1:6379/0"),
            inference_address=env.str("INFERENCE_ADDRESS", "127.0.0.1:50061"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            heartbeat_throttle_seconds=env.float("HEARTBEAT_THROTTLE_SECONDS", 1.0),
            grace_seconds=env.float("GRACE_SECONDS", 10.0),
        )
