"""Settings come from SWITCHBOARD_INFERENCE_* and are checked at start-up."""

from __future__ import annotations

import pytest

from switchboard.inference.config import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})

    assert (settings.host, settings.port, settings.metrics_port) == ("127.0.0.1", 50061, 9103)
    assert settings.max_concurrent_generations == 64
    assert (settings.first_token_timeout_s, settings.inter_token_timeout_s) == (30, 30)
    assert settings.generation_timeout_s == 300
    assert (settings.breaker_window_calls, settings.breaker_window_s) == (20, 60)
    assert (settings.breaker_failure_ratio, settings.breaker_min_calls) == (0.5, 5)
    assert settings.breaker_open_s == 30
    assert settings.unary_retries == 2
    assert settings.canary_interval_s == 10
    # Production's defaults name real models only; the test models are an explicit opt-in.
    assert settings.canary_route_names == ("default-chat", "default-embed")
    assert settings.test_models is False
    assert settings.test_streamer_tokens_per_second == 0


def test_values_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "SWITCHBOARD_INFERENCE_PORT": "6000",
            "SWITCHBOARD_INFERENCE_METRICS_PORT": "6001",
            "SWITCHBOARD_INFERENCE_TRITON_GRPC": "triton:8001",
            "SWITCHBOARD_INFERENCE_LOG_LEVEL": "DEBUG",
            "SWITCHBOARD_INFERENCE_MAX_CONCURRENT_GENERATIONS": "3",
            "SWITCHBOARD_INFERENCE_MAX_QUEUED_OCR": "0",
            "SWITCHBOARD_INFERENCE_FIRST_TOKEN_TIMEOUT_S": "1.5",
            "SWITCHBOARD_INFERENCE_INTER_TOKEN_TIMEOUT_S": "2.5",
            "SWITCHBOARD_INFERENCE_BREAKER_OPEN_S": "4",
            "SWITCHBOARD_INFERENCE_CANARY_ROUTES": " test-streamer , default-embed ",
            "SWITCHBOARD_INFERENCE_TEST_STREAMER_TOKENS_PER_SECOND": "50",
            "SWITCHBOARD_INFERENCE_TEST_MODELS": " True ",
            "OTHER_PORT": "1",
        }
    )

    assert (settings.port, settings.metrics_port) == (6000, 6001)
    assert settings.triton_grpc == "triton:8001"
    assert settings.log_level == "DEBUG"
    assert settings.max_concurrent_generations == 3
    assert settings.max_queued_ocr == 0
    assert (settings.first_token_timeout_s, settings.inter_token_timeout_s) == (1.5, 2.5)
    assert settings.breaker_open_s == 4
    assert settings.canary_route_names == ("test-streamer", "default-embed")
    assert settings.test_streamer_tokens_per_second == 50
    assert settings.test_models is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "http", "must be an integer"),
        ("BREAKER_OPEN_S", "soon", "must be a number"),
        ("MAX_CONCURRENT_GENERATIONS", "0", "must be positive"),
        ("MAX_QUEUED_EMBEDS", "-1", ">= 0"),
        ("GENERATION_TIMEOUT_S", "-1", "must be positive"),
        ("INTER_TOKEN_TIMEOUT_S", "0", "must be positive"),
        ("BREAKER_FAILURE_RATIO", "1.5", "in \\(0, 1\\]"),
        ("CANARY_ROUTES", " , ", "at least one route"),
        ("TEST_STREAMER_TOKENS_PER_SECOND", "-5", ">= 0"),
        ("TEST_MODELS", "maybe", "true or false"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        Settings.from_env({f"SWITCHBOARD_INFERENCE_{name}": value})

    assert f"SWITCHBOARD_INFERENCE_{name}" in str(raised.value)
