"""The Containerfiles under mesh/images, read into stages of instructions.

Enough of the Dockerfile grammar for our own files: comment lines (also inside a continued
instruction, as BuildKit drops them), backslash continuations, exec (JSON) and shell forms.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "mesh" / "images"
# Every Containerfile is built with the repository root as its context (docs/deploy.md).
CONTEXT = ROOT


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, continuations joined
    line: int  # where it starts, 1-based

    def words(self) -> list[str]:
        """The arguments as a list: JSON for the exec form, else split as a shell would."""
        if self.args.startswith("["):
            parsed = json.loads(self.args)
            assert isinstance(parsed, list)
            return [str(word) for word in parsed]
        return shlex.split(self.args)


@dataclass(frozen=True)
class Stage:
    image: str  # what FROM names: an image reference or an earlier stage
    name: str | None  # FROM ... AS name
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def containerfiles() -> list[Path]:
    return sorted(IMAGES.glob("*.Containerfile"))


def instructions(path: Path) -> list[Instruction]:
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, args = " ".join(pending).partition(" ")
            result.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    assert not pending, f"{path.name}: the last instruction ends with a continuation"
    return result


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for instruction in instructions(path):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.words() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name, ()))
        else:
            assert result, f"{path.name}:{instruction.line}: an instruction before FROM"
            last = result[-1]
            result[-1] = Stage(last.image, last.name, (*last.instructions, instruction))
    return result


def copy_sources(instruction: Instruction) -> list[str]:
    """The context paths a COPY or ADD reads; none for COPY --from (another stage)."""
    words = instruction.words()
    if any(w.startswith("--from=") for w in words):
        return []
    return [w for w in words if not w.startswith("--")][:-1]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `relative` out of the context (the last match wins; a
    pattern that matches a folder matches what is in it)."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        if body.startswith("**/"):  # at any depth: any component of the path
            matched = any(fnmatch.fnmatchcase(part, body[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes)
        if matched:
            excluded = not negated
    return excluded


def ignore_patterns() -> list[str]:
    lines = (CONTEXT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
