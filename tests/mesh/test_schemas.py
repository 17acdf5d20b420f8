"""Every rendered object validates against real schemas: core kinds with
kubernetes-validate (strict: unknown fields are errors), Istio and KEDA resources against
their CRDs' OpenAPI schemas (tests/mesh/crds.py). And the validators can fail."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest

from . import crds
from .manifests import K8S, OVERLAYS, Manifest, ident, named, render, render_dir

# The oldest Kubernetes these manifests are for: preStop `sleep` (1.29, on by default from
# 1.30), native gRPC probes (1.27), matchLabelKeys in topology spread (1.27).
KUBERNETES = "1.30"


def validate_core(obj: Manifest) -> None:
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_validate(overlay: str) -> None:
    core = [o for o in render(overlay) if not crds.is_custom(o)]
    assert core
    for obj in core:
        try:
            validate_core(obj)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{overlay}: {ident(obj)} at {path}: {e.message}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_crds(overlay: str) -> None:
    for obj in render(overlay):
        if not crds.is_custom(obj):
            continue
        try:
            crds.validate(obj)
        except jsonschema.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            pytest.fail(f"{overlay}: {ident(obj)} at {path}: {e.message}")


def test_the_keda_resources_are_custom_resources_we_validate() -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in render_dir(K8S / "keda")}
    assert ("keda.sh/v1alpha1", "ScaledObject") in kinds
    assert all(key in crds.schemas() for key in kinds if key[0].startswith("keda.sh"))


def test_a_misspelt_core_field_is_refused() -> None:
    deployment = copy.deepcopy(named(render("dev"), "Deployment", "edge"))
    validate_core(deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = (
        8080
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(deployment)


def test_a_wrong_core_type_is_refused() -> None:
    service = copy.deepcopy(named(render("dev"), "Service", "planner"))
    service["spec"]["ports"][0]["port"] = "fifty"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(service)


def test_a_scaled_object_with_an_unknown_field_or_bad_type_is_refused() -> None:
    scaled = copy.deepcopy(named(render("gpu"), "ScaledObject", "worker"))
    crds.validate(scaled)
    misspelt = copy.deepcopy(scaled)
    misspelt["spec"]["minReplicas"] = 2
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(misspelt)
    mistyped = copy.deepcopy(scaled)
    mistyped["spec"]["maxReplicaCount"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(mistyped)
    no_trigger_type = copy.deepcopy(scaled)
    del no_trigger_type["spec"]["triggers"][0]["type"]
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(no_trigger_type)


def test_istio_schemas_refuse_bad_objects_too() -> None:
    rule: Manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "planner", "namespace": "switchboard"},
        "spec": {
            "host": "planner",
            "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-job-id"}}},
        },
    }
    crds.validate(rule)
    rule["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"]["httpHeader"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(rule)


def test_int_or_string_fields_take_both() -> None:
    """`x-kubernetes-int-or-string` (e.g. a port selector, a duration) accepts 8 and "8"."""
    schema = crds.to_json_schema(
        {"type": "object", "properties": {"n": {"x-kubernetes-int-or-string": True}}}
    )
    jsonschema.Draft4Validator(schema).validate({"n": 8})
    jsonschema.Draft4Validator(schema).validate({"n": "8"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"n": 8.5})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({"m": 1})


def test_a_kind_without_a_crd_is_not_passed_unseen() -> None:
    with pytest.raises(KeyError):
        crds.validate({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledThing", "spec": {}})
