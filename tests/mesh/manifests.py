"""The Kustomize overlays under mesh/k8s, rendered as `kubectl apply -k` would send them.

kubectl (with its built-in kustomize) renders without a cluster. Tests that need a render
skip, saying why, only when kubectl is not installed.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "mesh" / "k8s"
OVERLAYS = ("dev", "gpu")
# The contract's components: each one Deployment, one Service, one ServiceAccount.
COMPONENTS = ("edge", "planner", "worker", "inference", "triton")
# The dev overlay's in-namespace stores.
STORES = ("valkey", "chroma")
NAMESPACE = "switchboard"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"

Manifest = dict[str, Any]


def kubectl() -> str:
    """kubectl from the venv (where bootstrap may put it) or PATH; skips the test if absent."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("kubectl", path=path)
    if found is None:
        pytest.skip("kubectl is not installed: the manifests cannot be rendered here")
    return found


@functools.cache
def _render(directory: Path) -> tuple[Manifest, ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{out.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def render(overlay: str) -> tuple[Manifest, ...]:
    """Every object of `mesh/k8s/overlays/<overlay>`; shared between tests, so never mutate
    one (copy.deepcopy first)."""
    return _render(K8S / "overlays" / overlay)


def render_dir(directory: Path) -> tuple[Manifest, ...]:
    return _render(directory)


def of_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    for o in of_kind(objects, kind):
        if o["metadata"]["name"] == name:
            return o
    raise KeyError(f"no {kind} {name!r} in the render")


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> Iterator[Manifest]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workloads(objects: Iterable[Manifest]) -> list[Manifest]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def ours(objects: Iterable[Manifest]) -> list[Manifest]:
    """Our workloads: the components and stores (not Istio's gateway, whose pod Istio's
    injection fills in)."""
    return [w for w in workloads(objects) if w["metadata"]["name"] in (*COMPONENTS, *STORES)]


def ident(o: Manifest) -> str:
    return f"{o['kind']}/{o['metadata']['name']}"
