"""Settings come from SWITCHBOARD_PLANNER_* and SWITCHBOARD_WORKER_* only."""

from __future__ import annotations

import pytest

from switchboard.planner.shared.config import Settings, WorkerSettings


def test_planner_defaults_and_overrides() -> None:
    assert Settings.from_env({}).task_queue == "switchboard-jobs"
    assert Settings.from_env({}).temporal_namespace == "default"
    settings = Settings.from_env(
        {
            "SWITCHBOARD_PLANNER_PORT": "7001",
            "SWITCHBOARD_PLANNER_TEMPORAL_ADDRESS": "127.0.0.1:9",
            "SWITCHBOARD_PLANNER_VALKEY_URL": "valkey://h:1/2",
            "SWITCHBOARD_PLANNER_HEARTBEAT_SECONDS": "2.5",
            "SWITCHBOARD_PLANNER_INTERNAL_TOKENS": " new-token , old-token,",
            "SWITCHBOARD_WORKER_PORT": "1",  # another process's prefix: ignored
        }
    )
    assert (settings.port, settings.temporal_address) == (7001, "127.0.0.1:9")
    assert (settings.valkey_url, settings.heartbeat_seconds) == ("valkey://h:1/2", 2.5)
    assert [t.value for t in settings.internal_tokens] == ["new-token", "old-token"]
    assert "new-token" not in repr(settings)
    assert Settings.from_env({}).internal_tokens == ()


def test_worker_reads_its_own_prefix() -> None:
    settings = WorkerSettings.from_env(
        {
            "SWITCHBOARD_WORKER_INFERENCE_ADDRESS": "127.0.0.1:18001",
            "SWITCHBOARD_WORKER_TASK_QUEUE": "q",
            "SWITCHBOARD_PLANNER_TASK_QUEUE": "not-this",
        }
    )
    assert (settings.inference_address, settings.task_queue) == ("127.0.0.1:18001", "q")


def test_worker_metrics_listen_on_loopback_unless_told() -> None:
    assert WorkerSettings.from_env({}).metrics_host == "127.0.0.1"
    told = WorkerSettings.from_env({"SWITCHBOARD_WORKER_METRICS_HOST": "0.0.0.0"})
    assert told.metrics_host == "0.0.0.0"


def test_bad_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="SWITCHBOARD_PLANNER_PORT"):
        Settings.from_env({"SWITCHBOARD_PLANNER_PORT": "http"})


def test_worker_outage_horizon_and_retry_schedule() -> None:
    assert WorkerSettings.from_env({}).retry.horizon_seconds == 300.0
    settings = WorkerSettings.from_env(
        {
            "SWITCHBOARD_WORKER_OUTAGE_HORIZON_S": "42",
            "SWITCHBOARD_WORKER_RETRY_INITIAL_INTERVAL_S": "0.5",
            "SWITCHBOARD_WORKER_RETRY_MAX_INTERVAL_S": "4",
            "SWITCHBOARD_WORKER_RETRY_MAX_ATTEMPTS": "2",
        }
    )
    retry = settings.retry
    assert (retry.horizon_seconds, retry.max_attempts) == (42.0, 2)
    assert [retry.delay(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
    with pytest.raises(ValueError, match="RETRY_MAX"):
        WorkerSettings.from_env({"SWITCHBOARD_WORKER_RETRY_MAX_ATTEMPTS": "0"})


def test_the_worker_runs_workflows_without_the_sandbox_unless_told() -> None:
    assert WorkerSettings.from_env({}).sandbox is False
    assert WorkerSettings.from_env({"SWITCHBOARD_WORKER_SANDBOX": "true"}).sandbox is True
    with pytest.raises(ValueError, match="SANDBOX"):
        WorkerSettings.from_env({"SWITCHBOARD_WORKER_SANDBOX": "sometimes"})
