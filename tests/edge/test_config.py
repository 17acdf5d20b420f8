"""Settings come only from SWITCHBOARD_EDGE_* variables."""

from __future__ import annotations

import pytest

from switchboard.edge.config import PREFIX, Settings
from switchboard.edge.ratelimit import Limit


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


def test_http_and_stream_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.max_wait_seconds, defaults.sse_max_seconds) == (10.0, 300.0)
    assert (defaults.cors_origins, defaults.stream_token_secret.value) == ((), "")
    settings = Settings.from_env(
        {
            "SWITCHBOARD_EDGE_MAX_WAIT_SECONDS": "3",
            "SWITCHBOARD_EDGE_SSE_MAX_SECONDS": "2.5",
            "SWITCHBOARD_EDGE_CORS_ORIGINS": "http://a.test:8000, https://b.test",
            "SWITCHBOARD_EDGE_STREAM_TOKEN_SECRET": "tok-secret",
        }
    )
    assert (settings.max_wait_seconds, settings.sse_max_seconds) == (3.0, 2.5)
    assert settings.cors_origins == ("http://a.test:8000", "https://b.test")
    assert "tok-secret" not in repr(settings)
    for name, value in (("MAX_WAIT_SECONDS", "-1"), ("SSE_MAX_SECONDS", "0")):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({f"SWITCHBOARD_EDGE_{name}": value})


def test_keys_limits_and_internal_token_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.valkey_url, defaults.key_cache_seconds) == ("", 5.0)
    assert defaults.rate_limits.for_client("anyone") == Limit(20.0, 40)
    assert defaults.internal_token.value == ""
    settings = Settings.from_env(
        {
            "SWITCHBOARD_EDGE_VALKEY_URL": "valkey://127.0.0.1:6379/0",
            "SWITCHBOARD_EDGE_KEY_CACHE_SECONDS": "2",
            "SWITCHBOARD_EDGE_RATE_LIMIT_PER_SECOND": "5",
            "SWITCHBOARD_EDGE_RATE_LIMIT_BURST": "7",
            "SWITCHBOARD_EDGE_RATE_LIMIT_CLIENTS": "bench=0,vip=50:100",
            "SWITCHBOARD_EDGE_INTERNAL_TOKEN": "internal-secret",
        }
    )
    assert (settings.valkey_url, settings.key_cache_seconds) == ("valkey://127.0.0.1:6379/0", 2)
    limits = settings.rate_limits
    assert limits.for_client("anyone") == Limit(5.0, 7)
    assert (limits.for_client("bench"), limits.for_client("vip")) == (None, Limit(50.0, 100))
    assert settings.internal_token.value == "internal-secret"
    assert "internal-secret" not in repr(settings)
    for name, value in (("KEY_CACHE_SECONDS", "-1"), ("RATE_LIMIT_CLIENTS", "vip=fast")):
        with pytest.raises(ValueError):
            Settings.from_env({f"SWITCHBOARD_EDGE_{name}": value})


def test_inference_address() -> None:
    assert Settings.from_env({}).inference_address == "127.0.0.1:50061"
    env = {"SWITCHBOARD_EDGE_INFERENCE_ADDRESS": "127.0.0.1:10001"}
    assert Settings.from_env(env).inference_address == "127.0.0.1:10001"
    with pytest.raises(ValueError, match="INFERENCE_ADDRESS"):
        Settings.from_env({"SWITCHBOARD_EDGE_INFERENCE_ADDRESS": ""})


def test_stream_cap_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.max_streams_per_client, defaults.stream_lease_seconds) == (32, 30.0)
    env = {f"{PREFIX}_MAX_STREAMS_PER_CLIENT": "0", f"{PREFIX}_STREAM_LEASE_SECONDS": "1.5"}
    settings = Settings.from_env(env)
    assert (settings.max_streams_per_client, settings.stream_lease_seconds) == (0, 1.5)
    for name, value in [("MAX_STREAMS_PER_CLIENT", "-1"), ("STREAM_LEASE_SECONDS", "0")]:
        with pytest.raises(ValueError, match=name):
            Settings.from_env({f"{PREFIX}_{name}": value})
