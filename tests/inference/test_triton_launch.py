"""The rendered Triton repository (the real models by default, the test doubles on request),
and the wrapper that renders it and then becomes tritonserver."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from switchboard.inference import triton_launch

REAL_MODELS = {"smollm2-135m-instruct", "all-minilm-l6-v2", "ppocr-v4"}
TEST_MODELS = {"test-streamer", "test-fail", "test-hang", "test-echo-embed"}


def _rendered(layout: triton_launch.TritonLayout) -> set[str]:
    return {p.name for p in layout.model_repository.iterdir() if p.is_dir()}


def test_the_default_repository_holds_only_real_models(tmp_path: Path) -> None:
    layout = triton_launch.prepare(tmp_path)

    assert _rendered(layout) == REAL_MODELS
    for config in layout.model_repository.glob("*/config.pbtxt"):
        assert triton_launch.PLACEHOLDER not in config.read_text(encoding="utf-8")


def test_the_opt_in_adds_the_test_models_and_a_rerender_drops_them(tmp_path: Path) -> None:
    layout = triton_launch.prepare(tmp_path, test_models=True)
    assert _rendered(layout) == REAL_MODELS | TEST_MODELS
    assert (layout.model_repository / "test-streamer" / "1" / "model.py").is_file()

    # The state folder is rendered afresh: a later production render leaves no test model.
    assert _rendered(triton_launch.prepare(tmp_path)) == REAL_MODELS


def _fake_tritonserver(folder: Path) -> Path:
    """A `tritonserver` that records its pid, LD_LIBRARY_PATH and argv, then exits 3."""
    folder.mkdir()
    fake = folder / "tritonserver"
    record = folder / "record"
    fake.write_text(
        "#!/bin/sh\n"
        f'{{ echo "$$"; echo "$LD_LIBRARY_PATH"; printf "%s\\n" "$@"; }} > {record}\n'
        "exit 3\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    return record


def test_the_wrapper_prepares_the_repository_then_becomes_tritonserver(tmp_path: Path) -> None:
    """`python -m ...triton_launch` renders the repository, then execs tritonserver (found on
    PATH when SWITCHBOARD_TRITONSERVER names it so): the same pid, Triton's argv and exit."""
    record = _fake_tritonserver(tmp_path / "bin")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(tmp_path / "bin"), os.environ.get("PATH", "")]),
        "SWITCHBOARD_TRITONSERVER": "tritonserver",
    }
    state = tmp_path / "state"
    argv = [
        sys.executable, "-m", "switchboard.inference.triton_launch",
        "--state-dir", str(state),
        "--grpc-port", "18041", "--http-port", "18040", "--metrics-port", "18042",
        "--test-models",
    ]  # fmt: skip
    wrapper = subprocess.Popen(argv, env=env)
    assert wrapper.wait(timeout=60) == 3  # tritonserver's own exit status

    pid, library_path, *server_argv = record.read_text(encoding="utf-8").splitlines()
    assert int(pid) == wrapper.pid, "tritonserver ran in a child, not in the wrapper's process"
    root = state.resolve()
    layout = triton_launch.TritonLayout(root, root / "models", root / "backends")
    expected = triton_launch.command(
        layout, grpc_port=18041, http_port=18040, metrics_port=18042, binary="tritonserver"
    )
    assert server_argv == expected[1:]
    assert library_path.split(os.pathsep)[0] == sysconfig.get_config_var("LIBDIR")
    assert _rendered(layout) == REAL_MODELS | TEST_MODELS
    stub = layout.backend_directory / "python" / "triton_python_backend_stub"
    assert stub.is_symlink() and stub.resolve().is_file()


def test_the_wrapper_without_the_opt_in_serves_only_real_models(tmp_path: Path) -> None:
    record = _fake_tritonserver(tmp_path / "bin")
    env = {**os.environ, "SWITCHBOARD_TRITONSERVER": str(tmp_path / "bin" / "tritonserver")}
    state = tmp_path / "state"
    argv = [
        sys.executable, "-m", "switchboard.inference.triton_launch", f"--state-dir={state}",
        "--grpc-port=1", "--http-port=2", "--metrics-port=3",
    ]  # fmt: skip
    assert subprocess.run(argv, env=env, check=False, timeout=60).returncode == 3
    assert f"--model-repository={(state / 'models').resolve()}" in record.read_text("utf-8")
    assert {p.name for p in (state / "models").iterdir()} == REAL_MODELS
