"""Settings come only from SWITCHBOARD_EDGE_* variables."""

from __future__ import annotations

import pytest

from switchboard.edge.config import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.heartbeat_seconds) == ("127.0.0.1", 8080, 15.0)
    assert settings.planner_address == "127.0.0.1:50051"
    assert settings.log_level == "INFO"
    assert settings.api_keys.value == ""


def test_overrides_and_secret_redaction() -> None:
    settings = Settings.from_env(
        {
            "SWITCHBOARD_EDGE_HOST": "0.0.0.0",
            "SWITCHBOARD_EDGE_PORT": "9000",
            "SWITCHBOARD_EDGE_PLANNER_ADDRESS": "envoy:10001",
            "SWITCHBOARD_EDGE_API_KEYS": "sb-dev-key=dev",
            "SWITCHBOARD_EDGE_LOG_LEVEL": "debug",
            "SWITCHBOARD_EDGE_HEARTBEAT_SECONDS": "0.5",
            "SWITCHBOARD_PLANNER_PORT": "1",
        }
    )
    assert (settings.host, settings.port, settings.planner_address) == (
        "0.0.0.0",
        9000,
        "envoy:10001",
    )
    assert (settings.log_level, settings.heartbeat_seconds) == ("debug", 0.5)
    assert settings.api_keys.value == "sb-dev-key=dev"
    assert "sb-dev-key" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "http"), ("PORT", "70000"), ("HEARTBEAT_SECONDS", "0"), ("PLANNER_ADDRESS", "")],
)
def test_bad_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({f"SWITCHBOARD_EDGE_{name}": value})
