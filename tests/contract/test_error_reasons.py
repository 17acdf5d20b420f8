"""Every reason the code can put in an ErrorInfo is declared in the contract's ErrorReason."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import switchboard
from switchboard.api.rpc.v1 import error_reason_pb2
from switchboard.common.errors import SwitchboardError

DECLARED = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
SERVICES = Path(switchboard.__file__).resolve().parent


def _error_classes() -> set[type[SwitchboardError]]:
    for module in pkgutil.walk_packages([str(SERVICES)], "switchboard."):
        # __main__ modules run servers when imported; the API is generated code.
        skip = module.name.endswith("__main__") or module.name.startswith("switchboard.api")
        if not skip:
            importlib.import_module(module.name)
    found: set[type[SwitchboardError]] = set()
    pending: list[type[SwitchboardError]] = [SwitchboardError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def _literal_reasons() -> set[str]:
    """reason="X" and ApplicationError(type="X") written at raise sites."""
    found = set()
    for path in SERVICES.rglob("*.py"):
        if "api" in path.relative_to(SERVICES).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.keyword)
                and node.arg in ("reason", "type")
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and node.value.value.isupper()
            ):
                found.add(node.value.value)
    return found


def test_error_classes_use_declared_reasons() -> None:
    undeclared = {c.__name__: c.reason for c in _error_classes() if c.reason not in DECLARED}
    assert undeclared == {}


def test_reasons_written_at_raise_sites_are_declared() -> None:
    assert _literal_reasons() - DECLARED == set()


def test_the_check_sees_the_code() -> None:
    assert len(_error_classes()) > 20
    assert "VALIDATION_FAILED" in _literal_reasons()
