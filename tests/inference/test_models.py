"""The model catalog: names, aliases and tasks."""

from __future__ import annotations

import pytest

from switchboard.inference.errors import ModelNotFound, ModelTaskMismatch
from switchboard.inference.models import EMBED, GENERATE, Catalog, Model, default_catalog


def test_default_catalog_resolves_names_and_the_alias() -> None:
    catalog = default_catalog(test_streamer_tokens_per_second=7)

    assert catalog.resolve("test-streamer", GENERATE).triton_name == "test-streamer"
    assert catalog.resolve("default-chat", GENERATE).name == "test-streamer"
    assert catalog.resolve("default-chat", GENERATE).tokens_per_second == 7
    assert catalog.resolve("test-fail", GENERATE).triton_name == "test-fail"
    assert [m.name for m in catalog] == ["test-streamer", "test-fail"]


def test_unknown_name_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound) as raised:
        default_catalog().resolve("gpt-17", GENERATE)

    assert raised.value.reason == "MODEL_NOT_FOUND"
    assert raised.value.metadata == {"model": "gpt-17"}


def test_wrong_task_is_refused() -> None:
    catalog = Catalog([Model("embedder", "embedder", EMBED)])

    with pytest.raises(ModelTaskMismatch) as raised:
        catalog.resolve("embedder", GENERATE)

    assert raised.value.reason == "MODEL_TASK_MISMATCH"


def test_a_name_defined_twice_is_rejected() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        Catalog(
            [
                Model("a", "a", GENERATE, aliases=("chat",)),
                Model("b", "b", GENERATE, aliases=("chat",)),
            ]
        )
