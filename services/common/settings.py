"""Reading settings from the environment; called from main(), never at import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Secret:
    """A value that never shows in repr, logs or tracebacks."""

    value: str

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    __str__ = __repr__


class Env:
    """Typed access to `PREFIX_NAME` variables, with the defaults written at the call."""

    def __init__(self, environ: Mapping[str, str], prefix: str) -> None:
        self.environ = environ
        self.prefix = prefix

    def str(self, name: str, default: str) -> str:
        return self.environ.get(f"{self.prefix}_{name}", default)

    def int(self, name: str, default: int) -> int:
        raw = self.environ.get(f"{self.prefix}_{name}")
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{self.prefix}_{name} must be an integer, got {raw!r}") from None

    def float(self, name: str, default: float) -> float:
        raw = self.environ.get(f"{self.prefix}_{name}")
        if raw is None or raw == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{self.prefix}_{name} must be a number, got {raw!r}") from None

    def secret(self, name: str) -> Secret:
        return Secret(self.environ.get(f"{self.prefix}_{name}", ""))
