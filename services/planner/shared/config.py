"""Settings of the planner server (SWITCHBOARD_PLANNER_*) and its worker (SWITCHBOARD_WORKER_*)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from switchboard.common.settings import Env, Secret

DEFAULT_TASK_QUEUE = "switchboard-jobs"
DEFAULT_CHROMA_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class RetrySchedule:
    """The worker's retry schedule (SWITCHBOARD_WORKER_OUTAGE_*, SWITCHBOARD_WORKER_RETRY_*)."""

    horizon_seconds: float = 300.0
    initial_interval_seconds: float = 1.0
    max_interval_seconds: float = 15.0
    backoff: float = 2.0
    # Attempts for a retryable failure that is not an outage.
    max_attempts: int = 3

    def delay(self, attempt: int) -> timedelta:
        """The wait after attempt `attempt` failed: initial * backoff**(attempt-1), capped."""
        exponent = min(attempt - 1, 64)  # bounded: the cap is reached long before
        seconds = self.initial_interval_seconds * self.backoff**exponent
        return timedelta(seconds=min(seconds, self.max_interval_seconds))


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
    # Shared secrets of the callers whose `x-client-id` is believed (the edge's, SREs');
    # several, so one can be rotated without a gap. None: no call naming a client passes.
    internal_tokens: tuple[Secret, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        env = Env(environ, "SWITCHBOARD_PLANNER")
        tokens = env.secret("INTERNAL_TOKENS").value.split(",")
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
            internal_tokens=tuple(Secret(t.strip()) for t in tokens if t.strip()),
        )


@dataclass(frozen=True)
class WebhookSettings:
    """How the worker signs and delivers job webhooks (SWITCHBOARD_WORKER_WEBHOOK_*)."""

    # Per-client signing secrets (`whsec_...`), and the one for clients not listed.
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    default_secret: Secret = field(default_factory=lambda: Secret(""))
    # Hosts or addresses exempt from the private-address guard (local development, tests).
    allow: tuple[str, ...] = ()
    timeout_seconds: float = 10.0
    # The delivery schedule: initial * backoff**(attempt-1), capped, for max_attempts tries.
    initial_interval_seconds: float = 1.0
    backoff: float = 2.0
    max_interval_seconds: float = 300.0
    max_attempts: int = 8

    def secret_for(self, client_id: str) -> Secret:
        return self.secrets.get(client_id, self.default_secret)

    @classmethod
    def from_env(cls, env: Env) -> WebhookSettings:
        return cls(
            secrets=_secrets(env.secret("WEBHOOK_SECRETS")),
            default_secret=env.secret("WEBHOOK_DEFAULT_SECRET"),
            allow=tuple(h.strip() for h in env.str("WEBHOOK_ALLOW", "").split(",") if h.strip()),
            timeout_seconds=env.float("WEBHOOK_TIMEOUT_SECONDS", 10.0),
            initial_interval_seconds=env.float("WEBHOOK_INITIAL_INTERVAL_SECONDS", 1.0),
            backoff=env.float("WEBHOOK_BACKOFF", 2.0),
            max_interval_seconds=env.float("WEBHOOK_MAX_INTERVAL_SECONDS", 300.0),
            max_attempts=env.int("WEBHOOK_MAX_ATTEMPTS", 8),
        )


def _secrets(raw: Secret) -> dict[str, Secret]:
    """`client=whsec_...,client2=whsec_...` into per-client secrets."""
    secrets: dict[str, Secret] = {}
    for pair in raw.value.split(","):
        client, sep, secret = pair.strip().partition("=")
        if not pair.strip():
            continue
        if not sep or not client or not secret:
            # The value itself is never echoed: it is a secret.
            raise ValueError("SWITCHBOARD_WORKER_WEBHOOK_SECRETS must be client=secret,...")
        secrets[client.strip()] = Secret(secret.strip())
    return secrets


@dataclass(frozen=True)
class WorkerSettings:
    """The Temporal worker that runs JobWorkflow and its activities."""

    metrics_port: int
    # The worker serves only /metrics: loopback locally, the pod's address in a cluster.
    metrics_host: str
    temporal_address: str
    temporal_namespace: str
    task_queue: str
    valkey_url: str
    inference_address: str
    log_level: str
    heartbeat_throttle_seconds: float
    grace_seconds: float
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # Chroma's HTTP API: where the document pipelines keep their chunks' vectors.
    chroma_url: str = DEFAULT_CHROMA_URL
    # The chat pipeline's session memory: messages the model is given, and how long an idle
    # session's window is kept.
    chat_window_messages: int = 10
    chat_window_ttl_seconds: int = 1800
    # How long an unavailable dependency is waited out before a job fails, and the backoff
    # between attempts (see outage.py).
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    # Workflows in Temporal's sandbox: a check of determinism that the tests run; off, a job
    # costs the worker about a quarter less CPU (ADR 0010).
    sandbox: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        env = Env(environ, "SWITCHBOARD_WORKER")
        return cls(
            metrics_port=env.int("METRICS_PORT", 9102),
            metrics_host=env.str("METRICS_HOST", "127.0.0.1"),
            temporal_address=env.str("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=env.str("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.str("TASK_QUEUE", DEFAULT_TASK_QUEUE),
            valkey_url=env.str("VALKEY_URL", "valkey://127.0.0.1:6379/0"),
            inference_address=env.str("INFERENCE_ADDRESS", "127.0.0.1:50061"),
            log_level=env.str("LOG_LEVEL", "INFO"),
            heartbeat_throttle_seconds=env.float("HEARTBEAT_THROTTLE_SECONDS", 1.0),
            grace_seconds=env.float("GRACE_SECONDS", 10.0),
            webhooks=WebhookSettings.from_env(env),
            chroma_url=env.str("CHROMA_URL", DEFAULT_CHROMA_URL),
            chat_window_messages=env.int("CHAT_WINDOW_MESSAGES", 10),
            chat_window_ttl_seconds=env.int("CHAT_WINDOW_TTL_SECONDS", 1800),
            retry=_retry(env),
            sandbox=env.bool("SANDBOX", False),
        )


def _retry(env: Env) -> RetrySchedule:
    schedule = RetrySchedule(
        horizon_seconds=env.float("OUTAGE_HORIZON_S", 300.0),
        initial_interval_seconds=env.float("RETRY_INITIAL_INTERVAL_S", 1.0),
        max_interval_seconds=env.float("RETRY_MAX_INTERVAL_S", 15.0),
        max_attempts=env.int("RETRY_MAX_ATTEMPTS", 3),
    )
    if min(schedule.horizon_seconds, schedule.initial_interval_seconds) < 0:
        raise ValueError("SWITCHBOARD_WORKER_OUTAGE_HORIZON_S and _RETRY_* must not be negative")
    if schedule.max_attempts < 1 or schedule.max_interval_seconds <= 0:
        raise ValueError("SWITCHBOARD_WORKER_RETRY_MAX_* must be positive")
    return schedule
