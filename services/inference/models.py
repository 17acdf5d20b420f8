"""The model catalog: one declarative table of models, and the routes (aliases) over them.

A request names a model or an alias. A model's own name routes to that model only; an
alias routes to an ordered list of candidates, tried in turn when one fails for reasons of
its own (see routing.py). Fallbacks are declared only between models whose outputs are
interchangeable for the caller: an echoing test model is no stand-in for a chat model, and
embeddings of different models live in different vector spaces, so the default routes
have a single candidate until a second real model of the same kind is deployed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .errors import ModelNotFound, ModelTaskMismatch

GENERATE = "generate"
EMBED = "embed"
OCR = "ocr"
TASKS = (GENERATE, EMBED, OCR)

# How a generate model takes its input: RAW reads PROMPT, CHAT reads MESSAGES (JSON list of
# {role, content}) and applies its own chat template.
RAW = "raw"
CHAT = "chat"


@dataclass(frozen=True)
class Model:
    name: str
    triton_name: str
    task: str
    style: str = RAW
    # Triton rejects undeclared inputs, so optional inputs are sent only to models that
    # declare them: MAX_TOKENS, and TEMPERATURE/TOP_P/STOP/SEED ("sampling").
    takes_max_tokens: bool = False
    takes_sampling: bool = False
    # Sent as TOKENS_PER_SECOND when > 0; only test-streamer understands it.
    tokens_per_second: float = 0.0
    # Triton's max_batch_size: when > 0, every input has a leading batch dimension and one
    # request may carry up to this many rows.
    max_batch_size: int = 0

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0


@dataclass(frozen=True)
class Route:
    """What one requested name resolves to: the candidates, best first."""

    name: str
    task: str
    candidates: tuple[Model, ...]


class Catalog:
    """Resolves what a client asked for to the models that may serve it."""

    def __init__(
        self, models: Iterable[Model], aliases: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self._models = tuple(models)
        by_name = {m.name: m for m in self._models}
        if len(by_name) != len(self._models):
            raise ValueError("a model name is defined twice")
        self._routes = {m.name: Route(m.name, m.task, (m,)) for m in self._models}
        for alias, names in (aliases or {}).items():
            if alias in self._routes:
                raise ValueError(f"model name {alias!r} is defined twice")
            unknown = [n for n in names if n not in by_name]
            if not names or unknown:
                raise ValueError(f"alias {alias!r} needs known models, got {list(names)}")
            candidates = tuple(by_name[n] for n in names)
            if len({m.task for m in candidates}) != 1:
                raise ValueError(f"alias {alias!r} mixes tasks")
            self._routes[alias] = Route(alias, candidates[0].task, candidates)

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models)

    def resolve(self, name: str, task: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            raise ModelNotFound(f"unknown model {name!r}", metadata={"model": name})
        if route.task != task:
            raise ModelTaskMismatch(
                f"model {name!r} serves {route.task!r}, not {task!r}",
                metadata={"model": name, "task": route.task},
            )
        return route

    def route(self, name: str) -> Route:
        """The route of a name whatever its task (for the canary); ModelNotFound if none."""
        route = self._routes.get(name)
        if route is None:
            raise ModelNotFound(f"unknown model {name!r}", metadata={"model": name})
        return route

    def aliases_of(self, model: Model) -> tuple[str, ...]:
        """The aliases whose first choice is this model."""
        return tuple(
            r.name
            for r in self._routes.values()
            if r.name != model.name and r.candidates[0] == model
        )


# Test doubles (Triton folders `test-*`, see model_repository/) that stand in for real models
# in the local stack and the tests; production ships without them (docs/models.md).
TEST_MODEL_PREFIX = "test-"


def default_catalog(
    *, test_models: bool = False, test_streamer_tokens_per_second: float = 0.0
) -> Catalog:
    """The real models and their aliases; `test_models` adds the test doubles."""
    chat = "smollm2-135m-instruct"
    models = [
        Model(chat, chat, GENERATE, CHAT, takes_max_tokens=True, takes_sampling=True),
        Model("all-minilm-l6-v2", "all-minilm-l6-v2", EMBED, max_batch_size=32),
        Model("ppocr-v4", "ppocr-v4", OCR),
    ]
    aliases: dict[str, list[str]] = {
        "default-chat": [chat],
        "default-embed": ["all-minilm-l6-v2"],
        "default-ocr": ["ppocr-v4"],
    }
    if test_models:
        models += _test_models(test_streamer_tokens_per_second)
        # Always fails over: shows (and tests) fallback and the breaker on a real Triton.
        aliases["test-flaky-chat"] = ["test-fail", "test-streamer"]
    return Catalog(models, aliases)


def _test_models(test_streamer_tokens_per_second: float) -> list[Model]:
    return [
        Model(
            "test-streamer",
            "test-streamer",
            GENERATE,
            takes_max_tokens=True,
            tokens_per_second=test_streamer_tokens_per_second,
        ),
        Model("test-fail", "test-fail", GENERATE),
        Model("test-hang", "test-hang", GENERATE),
        Model("test-echo-embed", "test-echo-embed", EMBED, max_batch_size=32),
    ]
