"""Reading settings from the environment; called from main(), never at import."""

from __future__ import annotations

import builtins
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

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        return self.environ.get(f"{self.prefix}_{name}", default)

    def int(self, name: builtins.str, default: builtins.int) -> builtins.int:
        raw = self.environ.get(f"{self.prefix}_{name}")
        if raw is None or raw == "":
            return default
        try:
            return builtins.int(raw)
        except ValueError:
            raise ValueError(f"{self.prefix}_{name} must be an integer, got {raw!r}") from None

    def float(self, name: builtins.str, default: builtins.float) -> builtins.float:
        raw = self.environ.get(f"{self.prefix}_{name}")
        if raw is None or raw == "":
            return default
        try:
            return builtins.float(raw)
        except ValueError:
            raise ValueError(f"{self.prefix}_{name} must be a number, got {raw!r}") from None

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        """true/1/yes or false/0/no, any case; unset or empty is the default."""
        raw = self.environ.get(f"{self.prefix}_{name}", "")
        value = raw.strip().lower()
        if value == "":
            return default
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
        raise ValueError(f"{self.prefix}_{name} must be true or false, got {raw!r}")

    def secret(self, name: builtins.str) -> Secret:
        return Secret(self.environ.get(f"{self.prefix}_{name}", ""))
