"""Lay out and launch a real ``tritonserver`` for the inference service.

The server comes from the ``nvidia-pytriton`` wheel, but we serve our own model repository
rather than PyTriton's ``bind()``: ``prepare()`` renders the repository template next to this
module into a state folder (the real models; the ``test-*`` doubles only when asked) and
builds a Python-backend directory whose stub matches the running interpreter; ``command()``
and ``environment()`` give the argv and env to start it.

``python -m switchboard.inference.triton_launch`` does all three and then replaces itself with
``tritonserver`` (exec, not a child): whoever started it (the local stack's supervisor) holds
Triton's own pid, so signals, restarts and readiness checks reach Triton itself, and the
supervisor never imports inference code.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TritonLayout", "command", "environment", "main", "prepare", "tritonserver_binary"]

TEMPLATE = Path(__file__).resolve().parent / "model_repository"
PLACEHOLDER = "${EXECUTION_ENV_PATH}"
# The template's test doubles, as mesh/images/render-models.sh drops them from the images.
TEST_MODELS = "test-*"


@dataclass(frozen=True)
class TritonLayout:
    """Where a prepared Triton lives: its state root and the two folders it is started with."""

    root: Path
    model_repository: Path
    backend_directory: Path


def _pytriton_server_dir() -> Path:
    # Located without importing: pytriton's import is heavy and the wheel is an optional extra.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nvidia-pytriton is not installed (the 'mesh' extra)")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "tritonserver"


def tritonserver_binary() -> Path:
    """The ``tritonserver`` executable shipped in the ``nvidia-pytriton`` wheel."""
    binary = _pytriton_server_dir() / "bin" / "tritonserver"
    if not binary.is_file():
        raise FileNotFoundError(f"tritonserver not found at {binary}; install nvidia-pytriton")
    return binary


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _link(target: Path, link: Path) -> None:
    if not target.is_file():
        raise FileNotFoundError(f"missing Triton Python-backend file {target}")
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def _prepare_backends(backends: Path) -> None:
    server = _pytriton_server_dir()
    python = backends / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        _link(server / "backends" / "python" / name, python / name)
    # The wheel's backend folder has no stub: it ships one per Python version elsewhere.
    stub = server / "python_backend_stubs" / _python_version() / "triton_python_backend_stub"
    _link(stub, python / "triton_python_backend_stub")


def _render_models(models: Path, venv: Path, test_models: bool) -> None:
    shutil.rmtree(models, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    skip_tests = shutil.ignore_patterns(TEST_MODELS)

    def ignore(folder: str, names: list[str]) -> set[str]:
        ignored = skip(folder, names)
        if not test_models and Path(folder) == TEMPLATE:
            ignored |= skip_tests(folder, names)
        return ignored

    shutil.copytree(TEMPLATE, models, ignore=ignore)
    for config in models.glob("*/config.pbtxt"):
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace(PLACEHOLDER, str(venv.resolve())), encoding="utf-8")


def prepare(
    state_dir: Path, venv: Path = Path(sys.prefix), *, test_models: bool = False
) -> TritonLayout:
    """Build (or rebuild) the backend directory and rendered model repository under state_dir.

    ``venv`` is the environment the models' Python stub runs in; it must hold numpy < 2 and
    the same Python major.minor as the running interpreter. ``test_models`` adds the
    ``test-*`` doubles the local stack and the tests run on (the inference service's
    ``TEST_MODELS`` setting puts them in its catalog).
    """
    root = state_dir.resolve()
    layout = TritonLayout(root, root / "models", root / "backends")
    _prepare_backends(layout.backend_directory)
    _render_models(layout.model_repository, venv, test_models)
    return layout


def command(
    layout: TritonLayout,
    *,
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    binary: str | None = None,
) -> list[str]:
    """The full argv that starts Triton on loopback with every model in the repository loaded.

    ``binary`` names another ``tritonserver`` (a path, or a name looked up on PATH); the
    default is the one in the ``nvidia-pytriton`` wheel."""
    return [
        binary or str(tritonserver_binary()),
        f"--model-repository={layout.model_repository}",
        f"--backend-directory={layout.backend_directory}",
        "--model-control-mode=none",
        # Fail fast: a model that does not load should stop the server, not leave it half-up.
        "--exit-on-error=true",
        "--strict-readiness=true",
        "--disable-auto-complete-config",
        "--log-verbose=0",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        # CPU-only hosts: no DCGM probing, no pinned-memory pool to allocate.
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--exit-timeout-secs=10",
    ]


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """The env for tritonserver: base plus the running interpreter's libpython first.

    The stub links ``libpython3.X.so``; if the loader finds the system one instead of the
    interpreter the venv was built from, models fail to load with errors such as
    ``'_thread.RLock' object has no attribute '_recursion_count'``.
    """
    env = dict(base)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *rest])
    return env


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard.inference.triton_launch",
        description="Render Triton's model repository into a state folder, then exec tritonserver.",
    )
    parser.add_argument("--state-dir", type=Path, required=True, help="where to render it")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument(
        "--test-models", action="store_true", help="add the test-* doubles (local stack, tests)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ) -> None:
    """Prepare the repository, then exec ``tritonserver``; returns only if the exec fails.

    ``SWITCHBOARD_TRITONSERVER`` names another binary (a path, or a name on PATH)."""
    args = _arguments(argv)
    try:
        layout = prepare(args.state_dir, test_models=args.test_models)
    except FileNotFoundError as e:  # no pytriton, or a backend file missing from it
        raise SystemExit(f"triton_launch: {e}") from e
    full = command(
        layout,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        binary=environ.get("SWITCHBOARD_TRITONSERVER") or None,
    )
    # Whatever was buffered would be lost with this process image.
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(full[0], full, environment(environ))


if __name__ == "__main__":
    main()
