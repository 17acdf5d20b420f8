"""What a service imports, and what installing the package with one extra brings.

An image installs the switchboard wheel with its service's extra only, so every third-party
module the service can import must come from a distribution that extra pulls in. Both sides
are worked out here without installing anything: the import graph from the sources (every
import, lazy ones included, except under TYPE_CHECKING), the requirement closure from the
metadata of the distributions installed in this venv.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import sys
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "services"  # the `switchboard` package


def _source(module: str) -> Path | None:
    relative = Path(*module.split(".")[1:])
    for path in (PACKAGE / relative / "__init__.py", PACKAGE / relative.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_optional(node: ast.Try) -> bool:
    """`try: import x` / `except ImportError:`: the code runs on without x by design."""
    names = {"ImportError", "ModuleNotFoundError"}
    for handler in node.handlers:
        caught = handler.type
        types = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(t, ast.Name) and t.id in names for t in types):
            return True
    return False


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    package = module if is_package else module.rpartition(".")[0]
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Try) and _is_optional(node):
            # The guarded imports are optional; the rest of the body is followed.
            body = [n for n in node.body if not isinstance(n, ast.Import | ast.ImportFrom)]
            todo.extend([*body, *node.handlers, *node.orelse, *node.finalbody])
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))


def third_party_imports(entry: str) -> set[str]:
    """Top-level names of the non-stdlib modules `python -m entry` can import."""
    seen: set[str] = set()
    found: set[str] = set()
    todo = [entry, f"{entry}.__main__"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:n]) for n in range(2, len(parts)))  # parent packages
        path = _source(module)
        if path is None:
            continue  # `from pkg import name` where name is not a module
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imports(tree, module, path.name == "__init__.py"):
            top = name.partition(".")[0]
            if top == "switchboard":
                todo.append(name)
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def _closure(requirements: list[Requirement], extras: frozenset[str]) -> set[str]:
    names: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        requirement, wanted = todo.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (wanted or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in names:
            continue
        names.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (e.g. for another platform): nothing to follow
        todo.extend((Requirement(r), frozenset(requirement.extras)) for r in requires)
    return {key.partition("[")[0] for key in names}


def distributions(extra: str) -> set[str]:
    """Canonical names of what `pip install switchboard[extra]` installs, switchboard aside."""
    return _closure([Requirement(f"switchboard[{extra}]")], frozenset())


@functools.cache
def _packages() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def providers(top_level: str) -> set[str]:
    """The installed distributions that provide import name `top_level`."""
    return {canonicalize_name(d) for d in _packages().get(top_level, [])}
