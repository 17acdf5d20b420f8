"""Generate the Python contract from proto/, or a descriptor image for buf.

    python scripts/genproto.py python            # rewrite services/api/ from proto/
    python scripts/genproto.py image OUT [ROOT]  # FileDescriptorSet of ROOT/proto for buf

Third-party protos come from installed packages at generation time, never from copies in
the repository: `google/api`, `google/rpc` from googleapis-common-protos, the well-known
types from grpcio-tools, and `buf/validate/validate.proto` from the descriptor that the
protovalidate package embeds (it ships no .proto source).

protoc names Python modules after proto paths (`switchboard.jobs.v1`), which would collide
with the service packages (`switchboard.inference` is a service); generated code therefore
lives under `switchboard.api` and its imports are rewritten, the way temporalio commits
`temporalio/api/`.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
API = REPO / "services" / "api"
VALIDATE = "buf/validate/validate.proto"

_PB_MODULE = re.compile(r"\b(switchboard)\.(?!api\.)([a-z_]+\.v\d+)\b")
_BUF_MODULE = re.compile(r"\bbuf\.validate\b")


def _validate_descriptor_set(path: Path) -> None:
    from protovalidate._gen.buf.validate import validate_pb

    fds = descriptor_pb2.FileDescriptorSet()
    fds.file.add().MergeFromString(validate_pb.desc().proto.to_binary())
    path.write_bytes(fds.SerializeToString())


def _protoc(root: Path, work: Path, *args: str) -> None:
    deps = work / "deps.binpb"
    _validate_descriptor_set(deps)
    protos = sorted(str(p.relative_to(root / "proto")) for p in (root / "proto").rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {root / 'proto'}")
    argv = [
        "protoc",
        f"-I{root / 'proto'}",
        f"-I{Path(annotations_pb2.__file__).parent.parent.parent}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--descriptor_set_in={deps}",
        *args,
        *protos,
    ]
    if protoc.main(argv) != 0:
        raise SystemExit("protoc failed")


def _rewrite(text: str, stub: bool) -> str:
    def fix(line: str) -> str:
        line = _PB_MODULE.sub(r"\1.api.\2", line)
        return _BUF_MODULE.sub("switchboard.api.buf.validate", line)

    if stub:
        return fix(text)
    # In .py files the serialized descriptors hold proto package names that must stay as
    # they are; only import lines and the module-name argument change.
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("from ", "import ")) or "BuildTopDescriptorsAndMessages" in line:
            line = fix(line)
        out.append(line)
    return "".join(out)


def generate_python() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out = work / "out"
        out.mkdir()
        flags = [
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out=quiet:{out}",
            f"--mypy_grpc_out=quiet:{out}",
        ]
        _protoc(REPO, work, *flags, VALIDATE)
        shutil.rmtree(API, ignore_errors=True)
        for src in sorted(out.rglob("*.py*")):
            rel = src.relative_to(out)
            if "_grpc" in rel.name and "Stub" not in src.read_text():
                continue  # the proto defines no service: an empty module helps nobody
            if rel.parts[0] == "switchboard":
                rel = rel.relative_to("switchboard")
            dest = API / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(_rewrite(src.read_text(), stub=src.suffix == ".pyi"))
        for folder in [API, *(p for p in API.rglob("*") if p.is_dir())]:
            (folder / "__init__.py").touch()
        (API / "__init__.py").write_text(
            '"""Generated from proto/ by `make proto`; do not edit."""\n'
        )


def build_image(dest: Path, root: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _protoc(
            root,
            Path(tmp),
            f"--descriptor_set_out={dest}",
            "--include_imports",
            "--include_source_info",
        )


def main(argv: list[str]) -> None:
    if argv[:1] == ["python"]:
        generate_python()
    elif argv[:1] == ["image"] and len(argv) in (2, 3):
        build_image(Path(argv[1]).resolve(), Path(argv[2]).resolve() if len(argv) == 3 else REPO)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
