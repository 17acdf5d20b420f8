"""The model catalog: public model names and aliases mapped to Triton models and tasks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import ModelNotFound, ModelTaskMismatch

GENERATE = "generate"
EMBED = "embed"


@dataclass(frozen=True)
class Model:
    name: str
    triton_name: str
    task: str
    aliases: tuple[str, ...] = ()
    # Whether the Triton model declares a MAX_TOKENS input. Triton rejects undeclared
    # inputs, so the limit is only sent to models that take it.
    takes_max_tokens: bool = False
    # Sent as TOKENS_PER_SECOND when > 0; only test-streamer understands it.
    tokens_per_second: float = 0.0


class Catalog:
    """Resolves what a client asked for to the model that serves it."""

    def __init__(self, models: Iterable[Model]) -> None:
        self._models = tuple(models)
        self._by_name: dict[str, Model] = {}
        for model in self._models:
            for name in (model.name, *model.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name {name!r} is defined twice")
                self._by_name[name] = model

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models)

    def resolve(self, name: str, task: str) -> Model:
        model = self._by_name.get(name)
        if model is None:
            raise ModelNotFound(f"unknown model {name!r}", metadata={"model": name})
        if model.task != task:
            raise ModelTaskMismatch(
                f"model {name!r} serves {model.task!r}, not {task!r}",
                metadata={"model": name, "task": model.task},
            )
        return model


def default_catalog(test_streamer_tokens_per_second: float = 0.0) -> Catalog:
    return Catalog(
        [
            Model(
                "test-streamer",
                "test-streamer",
                GENERATE,
                aliases=("default-chat",),
                takes_max_tokens=True,
                tokens_per_second=test_streamer_tokens_per_second,
            ),
            Model("test-fail", "test-fail", GENERATE),
        ]
    )
