"""What the supervisor needs to know of one process: how it starts, when it is ready, what it
needs first. The stack's modules build these; the supervisor only runs them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import checks


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    # Called when the process starts, so building a spec (e.g. for `status`) writes nothing.
    argv: Callable[[], list[str]]
    check: checks.Check
    needs: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    # Triton loads models and the inference canary waits for it: give slow starters room.
    ready_timeout: float = 120.0


def python_module(module: str, *args: str) -> Callable[[], list[str]]:
    """`python -m module args...` with the launcher's own interpreter: the stack runs our
    code as processes, never by importing it."""
    return lambda: [sys.executable, "-m", module, *args]


def service_env(base: Mapping[str, str], prefix: str, **values: object) -> dict[str, str]:
    """base plus `SWITCHBOARD_<prefix>_<name>` for each value, as the service's main() reads."""
    return {**base, **{f"SWITCHBOARD_{prefix}_{k}": str(v) for k, v in values.items()}}
