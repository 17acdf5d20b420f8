"""Each overlay renders with `kubectl kustomize`, and holds the objects of the naming
contract (docs/deploy.md): names, labels, namespace, Service ports."""

from __future__ import annotations

import pytest

from .manifests import (
    COMPONENTS,
    K8S,
    NAME_LABEL,
    NAMESPACE,
    OVERLAYS,
    PART_OF_LABEL,
    Manifest,
    ident,
    named,
    of_kind,
    render,
    render_dir,
)

# Service ports of the contract: name → (port, appProtocol).
PORTS: dict[str, dict[str, tuple[int, str]]] = {
    "edge": {"http": (8080, "http")},
    "planner": {"grpc": (50051, "grpc"), "http-metrics": (9090, "http")},
    "worker": {"http-metrics": (9090, "http")},
    "inference": {"grpc": (50051, "grpc"), "http-metrics": (9090, "http")},
    "triton": {"grpc": (8001, "grpc"), "http": (8000, "http"), "http-metrics": (8002, "http")},
}
CLUSTER_SCOPED = {"Namespace"}


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    overlay: str = request.param
    return render(overlay)


def test_the_base_and_the_autoscaling_render_alone() -> None:
    assert {o["kind"] for o in render_dir(K8S / "base")} >= {"Deployment", "Service"}
    assert {o["kind"] for o in render_dir(K8S / "keda")} == {
        "ScaledObject",
        "HorizontalPodAutoscaler",
    }


def test_each_component_is_one_deployment_service_and_account(
    objects: tuple[Manifest, ...],
) -> None:
    for kind in ("Deployment", "Service", "ServiceAccount"):
        names = [o["metadata"]["name"] for o in of_kind(objects, kind)]
        for component in COMPONENTS:
            assert names.count(component) == 1, (kind, component)


def test_service_ports_are_the_contracts(objects: tuple[Manifest, ...]) -> None:
    for component, ports in PORTS.items():
        service = named(objects, "Service", component)
        found = {p["name"]: (p["port"], p["appProtocol"]) for p in service["spec"]["ports"]}
        assert found == ports, component
        assert service["spec"]["selector"] == {NAME_LABEL: component}


def test_every_object_is_labelled_and_in_the_namespace(objects: tuple[Manifest, ...]) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get(PART_OF_LABEL) == "switchboard", ident(obj)
        # Istio's resources (mesh/istio) configure Services rather than being components.
        if not obj["apiVersion"].partition("/")[0].endswith("istio.io"):
            assert NAME_LABEL in labels, ident(obj)
        if obj["kind"] in CLUSTER_SCOPED:
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, ident(obj)
    for component in COMPONENTS:
        template = named(objects, "Deployment", component)["spec"]["template"]
        assert template["metadata"]["labels"][NAME_LABEL] == component
        assert template["metadata"]["labels"][PART_OF_LABEL] == "switchboard"


def test_the_namespace_gets_sidecars(objects: tuple[Manifest, ...]) -> None:
    (namespace,) = of_kind(objects, "Namespace")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"


def test_images_are_ours_and_tagged(objects: tuple[Manifest, ...]) -> None:
    for component in COMPONENTS:
        deployment = named(objects, "Deployment", component)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        repository, _, tag = container["image"].partition(":")
        expected = f"switchboard/{component}" if component != "triton" else "switchboard/triton-"
        assert repository.startswith(expected) and tag, container["image"]


def test_the_overlays_include_the_istio_resources(objects: tuple[Manifest, ...]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {"PeerAuthentication", "DestinationRule", "AuthorizationPolicy"} <= kinds
