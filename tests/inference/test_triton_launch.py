"""The rendered Triton repository: the real models by default, the test doubles on request."""

from __future__ import annotations

from pathlib import Path

from switchboard.inference import triton_launch

REAL_MODELS = {"smollm2-135m-instruct", "all-minilm-l6-v2", "ppocr-v4"}
TEST_MODELS = {"test-streamer", "test-fail", "test-hang", "test-echo-embed"}


def _rendered(layout: triton_launch.TritonLayout) -> set[str]:
    return {p.name for p in layout.model_repository.iterdir() if p.is_dir()}


def test_the_default_repository_holds_only_real_models(tmp_path: Path) -> None:
    layout = triton_launch.prepare(tmp_path)

    assert _rendered(layout) == REAL_MODELS
    for config in layout.model_repository.glob("*/config.pbtxt"):
        assert triton_launch.PLACEHOLDER not in config.read_text(encoding="utf-8")


def test_the_opt_in_adds_the_test_models_and_a_rerender_drops_them(tmp_path: Path) -> None:
    layout = triton_launch.prepare(tmp_path, test_models=True)
    assert _rendered(layout) == REAL_MODELS | TEST_MODELS
    assert (layout.model_repository / "test-streamer" / "1" / "model.py").is_file()

    # The state folder is rendered afresh: a later production render leaves no test model.
    assert _rendered(triton_launch.prepare(tmp_path)) == REAL_MODELS
