"""The model catalog: names, aliases, fallbacks and tasks."""

from __future__ import annotations

import pytest

from switchboard.inference.config import Settings
from switchboard.inference.errors import ModelNotFound, ModelTaskMismatch
from switchboard.inference.models import EMBED, GENERATE, OCR, Catalog, Model, default_catalog

REAL_MODELS = {
    "smollm2-135m-instruct": GENERATE,
    "all-minilm-l6-v2": EMBED,
    "ppocr-v4": OCR,
}
TEST_MODELS = {
    "test-streamer": GENERATE,
    "test-fail": GENERATE,
    "test-hang": GENERATE,
    "test-echo-embed": EMBED,
}


def _names(catalog: Catalog, name: str, task: str) -> list[str]:
    return [m.name for m in catalog.resolve(name, task).candidates]


def test_the_production_catalog_holds_only_real_models() -> None:
    catalog = default_catalog()

    assert {m.name: m.task for m in catalog} == REAL_MODELS
    for name in ("test-streamer", "test-fail", "test-hang", "test-echo-embed", "test-flaky-chat"):
        with pytest.raises(ModelNotFound):
            catalog.route(name)
    # The production canary's default routes resolve without the test models.
    routes = [catalog.route(name) for name in Settings().canary_route_names]
    assert {m.name for r in routes for m in r.candidates} <= set(REAL_MODELS)


def test_default_routes_and_their_fallbacks() -> None:
    catalog = default_catalog(test_models=True)

    assert _names(catalog, "default-chat", GENERATE) == ["smollm2-135m-instruct"]
    assert _names(catalog, "default-embed", EMBED) == ["all-minilm-l6-v2"]
    assert _names(catalog, "default-ocr", OCR) == ["ppocr-v4"]
    assert _names(catalog, "test-flaky-chat", GENERATE) == ["test-fail", "test-streamer"]
    # A model's own name is that model only: no silent substitution.
    assert _names(catalog, "test-fail", GENERATE) == ["test-fail"]


def test_every_model_has_its_task_and_style() -> None:
    catalog = default_catalog(test_models=True, test_streamer_tokens_per_second=7)
    models = {m.name: m for m in catalog}

    assert {name: m.task for name, m in models.items()} == {**REAL_MODELS, **TEST_MODELS}
    chat = models["smollm2-135m-instruct"]
    assert (chat.style, chat.takes_max_tokens, chat.takes_sampling) == ("chat", True, True)
    assert models["test-streamer"].tokens_per_second == 7
    assert models["all-minilm-l6-v2"].max_batch_size == 32
    assert models["all-minilm-l6-v2"].batched and not models["ppocr-v4"].batched


def test_aliases_are_listed_on_their_first_choice() -> None:
    catalog = default_catalog(test_models=True)
    models = {m.name: m for m in catalog}

    assert catalog.aliases_of(models["smollm2-135m-instruct"]) == ("default-chat",)
    assert catalog.aliases_of(models["test-fail"]) == ("test-flaky-chat",)
    assert catalog.aliases_of(models["test-streamer"]) == ()


def test_unknown_name_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound) as raised:
        default_catalog().resolve("gpt-17", GENERATE)

    assert raised.value.reason == "MODEL_NOT_FOUND"
    assert raised.value.metadata == {"model": "gpt-17"}


@pytest.mark.parametrize(
    ("name", "task"), [("all-minilm-l6-v2", GENERATE), ("default-chat", EMBED)]
)
def test_wrong_task_is_refused(name: str, task: str) -> None:
    with pytest.raises(ModelTaskMismatch) as raised:
        default_catalog().resolve(name, task)

    assert raised.value.reason == "MODEL_TASK_MISMATCH"


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ({"a": ["b"]}, "defined twice"),
        ({"chat": ["nope"]}, "needs known models"),
        ({"chat": []}, "needs known models"),
        ({"mixed": ["a", "e"]}, "mixes tasks"),
    ],
)
def test_bad_tables_are_rejected(aliases: dict[str, list[str]], message: str) -> None:
    models = [Model("a", "a", GENERATE), Model("b", "b", GENERATE), Model("e", "e", EMBED)]
    with pytest.raises(ValueError, match=message):
        Catalog(models, aliases)


def test_a_model_defined_twice_is_rejected() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        Catalog([Model("a", "a", GENERATE), Model("a", "b", GENERATE)])
