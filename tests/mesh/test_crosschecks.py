"""Cross-checks over the rendered overlays: the objects agree with each other and with
the code (ports, selectors, settings, secrets, probes, the task queue)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from switchboard.edge.config import Settings as EdgeSettings
from switchboard.edge.server import GRACE_SECONDS as EDGE_GRACE_SECONDS
from switchboard.inference.config import Settings as InferenceSettings
from switchboard.planner.shared.config import DEFAULT_TASK_QUEUE, WorkerSettings
from switchboard.planner.shared.config import Settings as PlannerSettings

from .manifests import (
    COMPONENTS,
    NAME_LABEL,
    NAMESPACE,
    OVERLAYS,
    Manifest,
    containers,
    ident,
    named,
    of_kind,
    ours,
    pod_spec,
    render,
    workloads,
)

SETTINGS = "switchboard-settings"
SECRETS = "switchboard-secrets"
# Each component's settings reader; Triton (NVIDIA's server) reads none of ours.
READERS: Mapping[str, Callable[[Mapping[str, str]], object]] = {
    "edge": EdgeSettings.from_env,
    "planner": PlannerSettings.from_env,
    "worker": WorkerSettings.from_env,
    "inference": InferenceSettings.from_env,
}
SERVICE_ADDRESS = re.compile(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)")


class _Recorder(Mapping[str, str]):
    """An empty environment that notes every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_read(component: str) -> set[str]:
    """The environment variables the component's from_env reads, found by running it."""
    recorder = _Recorder()
    READERS[component](recorder)
    return recorder.asked


def container_ports(container: Manifest) -> dict[str | int, int]:
    """Each port by name and by number → its number."""
    ports: dict[str | int, int] = {}
    for port in container.get("ports", []):
        ports[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    return ports


def probes(container: Manifest) -> Iterator[tuple[str, Manifest]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            yield kind, container[kind]


def env_values(objects: tuple[Manifest, ...], container: Manifest) -> dict[str, str]:
    """The container's environment as the kubelet would resolve it."""
    config = named(objects, "ConfigMap", SETTINGS)["data"]
    secret = named(objects, "Secret", SECRETS)["stringData"]
    values: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        elif ref := var.get("valueFrom", {}).get("configMapKeyRef"):
            values[var["name"]] = config[ref["key"]]
        elif ref := var.get("valueFrom", {}).get("secretKeyRef"):
            values[var["name"]] = secret[ref["key"]]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(config)
    return values


def main_container(objects: tuple[Manifest, ...], component: str) -> Manifest:
    workload = named(objects, "Deployment", component)
    matches: list[Manifest] = [
        c for c in pod_spec(workload)["containers"] if c["name"] == component
    ]
    assert len(matches) == 1, component
    return matches[0]


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    overlay: str = request.param
    return render(overlay)


def test_every_probe_port_is_a_port_of_its_container(objects: tuple[Manifest, ...]) -> None:
    checked = 0
    for workload in ours(objects):
        for container in containers(workload):
            ports = container_ports(container)
            for kind, probe in probes(container):
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        assert port in ports, f"{ident(workload)} {kind} port {port!r}"
                        checked += 1
    assert checked >= 10


def test_every_container_has_readiness_and_liveness(objects: tuple[Manifest, ...]) -> None:
    for workload in ours(objects):
        for container in pod_spec(workload)["containers"]:
            assert {"readinessProbe", "livenessProbe"} <= set(container), ident(workload)


def test_every_service_selects_pods_and_targets_their_ports(
    objects: tuple[Manifest, ...],
) -> None:
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        matches = [
            w
            for w in workloads(objects)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"{ident(service)} selects {[ident(w) for w in matches]}"
        ports: dict[str | int, int] = {}
        for container in pod_spec(matches[0])["containers"]:
            ports.update(container_ports(container))
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in ports, (ident(service), port)
            assert "name" in port and "appProtocol" in port, (ident(service), port)


def test_workload_selectors_match_their_own_pods(objects: tuple[Manifest, ...]) -> None:
    for workload in ours(objects):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels[NAME_LABEL] == workload["metadata"]["name"]
    for budget in of_kind(objects, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"].items()
        matches = [
            w
            for w in workloads(objects)
            if selector <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, ident(budget)


def test_every_component_has_a_disruption_budget(objects: tuple[Manifest, ...]) -> None:
    budgets = {b["metadata"]["name"] for b in of_kind(objects, "PodDisruptionBudget")}
    assert budgets >= set(COMPONENTS)


def test_no_secret_value_appears_in_a_config_map(objects: tuple[Manifest, ...]) -> None:
    secrets = [
        value
        for secret in of_kind(objects, "Secret")
        for value in {**secret.get("stringData", {}), **secret.get("data", {})}.values()
    ]
    assert secrets and all(len(value) >= 8 for value in secrets)
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            for secret in secrets:
                assert secret not in value, f"a secret's value is in {ident(config)} {key}"
            assert not re.search(r"TOKEN|SECRET|API_KEYS|PASSWORD", key), key


def test_secrets_reach_pods_only_from_the_secret(objects: tuple[Manifest, ...]) -> None:
    """Sensitive settings come by secretKeyRef, never from the ConfigMap or a literal."""
    for workload in workloads(objects):
        for container in containers(workload):
            for var in container.get("env", []):
                if re.search(r"TOKEN|SECRET|API_KEYS", var["name"]):
                    assert "secretKeyRef" in var.get("valueFrom", {}), var["name"]


def test_every_referenced_key_exists_and_every_setting_is_used(
    objects: tuple[Manifest, ...],
) -> None:
    config = set(named(objects, "ConfigMap", SETTINGS)["data"])
    secret = set(named(objects, "Secret", SECRETS)["stringData"])
    used: set[str] = set()
    for workload in workloads(objects):
        for container in containers(workload):
            for var in container.get("env", []):
                source = var.get("valueFrom", {})
                if ref := source.get("configMapKeyRef"):
                    assert ref["name"] == SETTINGS and ref["key"] in config, var
                    used.add(ref["key"])
                if ref := source.get("secretKeyRef"):
                    assert ref["name"] == SECRETS and ref["key"] in secret, var
                    used.add(ref["key"])
    assert used == config | secret


@pytest.mark.parametrize("component", sorted(READERS))
def test_every_variable_a_deployment_sets_is_one_its_config_reads(
    objects: tuple[Manifest, ...], component: str
) -> None:
    read = variables_read(component)
    assert len(read) > 5  # the recorder sees the reads
    names = set(env_values(objects, main_container(objects, component)))
    assert names, component
    assert names <= read, f"{component} sets {sorted(names - read)}, which it never reads"


def test_triton_gets_none_of_our_settings(objects: tuple[Manifest, ...]) -> None:
    assert not env_values(objects, main_container(objects, "triton"))


@pytest.mark.parametrize("component", sorted(READERS))
def test_the_settings_parse_as_the_service_reads_them(
    objects: tuple[Manifest, ...], component: str
) -> None:
    """The resolved environment passes the service's own from_env (its range checks)."""
    READERS[component](env_values(objects, main_container(objects, component)))


@pytest.mark.parametrize("component", ["edge", "planner", "inference"])
def test_listeners_bind_every_interface_on_their_container_port(
    objects: tuple[Manifest, ...], component: str
) -> None:
    container = main_container(objects, component)
    env = env_values(objects, container)
    prefix = f"SWITCHBOARD_{component.upper()}_"
    assert env[prefix + "HOST"] == "0.0.0.0"
    ports = container_ports(container)
    assert int(env[prefix + "PORT"]) == ports["http" if component == "edge" else "grpc"]
    if component != "edge":
        assert int(env[prefix + "METRICS_PORT"]) == ports["http-metrics"]


def test_metrics_ports_are_the_containers(objects: tuple[Manifest, ...]) -> None:
    container = main_container(objects, "worker")
    env = env_values(objects, container)
    assert int(env["SWITCHBOARD_WORKER_METRICS_PORT"]) == container_ports(container)["http-metrics"]
    # Probes and Prometheus reach it on the pod's address, not loopback.
    assert env["SWITCHBOARD_WORKER_METRICS_HOST"] == "0.0.0.0"


def test_every_address_in_the_namespace_is_a_service_port(objects: tuple[Manifest, ...]) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    seen = 0
    for key, value in named(objects, "ConfigMap", SETTINGS)["data"].items():
        for name, namespace, port in SERVICE_ADDRESS.findall(value):
            if namespace != NAMESPACE:
                continue
            seen += 1
            assert name in services, f"{key} names a Service {name!r} that is not rendered"
            ports = {p["port"] for p in services[name]["spec"]["ports"]}
            assert int(port) in ports, f"{key}: {name} has no port {port}"
    assert seen >= 4


def test_the_pods_talk_to_the_right_peers(objects: tuple[Manifest, ...]) -> None:
    def host(component: str, variable: str) -> str:
        value = env_values(objects, main_container(objects, component))[variable]
        found = SERVICE_ADDRESS.search(value)
        assert found, f"{variable}={value}"
        return found.group(1)

    assert host("edge", "SWITCHBOARD_EDGE_PLANNER_ADDRESS") == "planner"
    assert host("edge", "SWITCHBOARD_EDGE_INFERENCE_ADDRESS") == "inference"
    assert host("worker", "SWITCHBOARD_WORKER_INFERENCE_ADDRESS") == "inference"
    assert host("inference", "SWITCHBOARD_INFERENCE_TRITON_GRPC") == "triton"
    for component in ("planner", "worker"):
        variable = f"SWITCHBOARD_{component.upper()}_TEMPORAL_ADDRESS"
        assert host(component, variable) == "temporal-frontend"


def test_pods_are_locked_down(objects: tuple[Manifest, ...]) -> None:
    for workload in ours(objects):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, ident(workload)
        assert spec["securityContext"].get("runAsUser", 0) != 0, ident(workload)
        assert spec.get("automountServiceAccountToken") is False, ident(workload)
        assert spec["serviceAccountName"] == workload["metadata"]["name"], ident(workload)
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, ident(workload)
            assert context["capabilities"]["drop"] == ["ALL"], ident(workload)
            assert context["readOnlyRootFilesystem"] is True, ident(workload)
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), ident(workload)
            assert "memory" in resources["limits"], ident(workload)


def _seconds(env: Mapping[str, str], variable: str) -> float:
    return float(env[variable])


def test_termination_grace_covers_the_drain(objects: tuple[Manifest, ...]) -> None:
    """preStop sleep + the service's own shutdown grace fit in terminationGracePeriodSeconds."""
    graces: dict[str, Callable[[Mapping[str, str]], float]] = {
        "edge": lambda env: float(EDGE_GRACE_SECONDS),  # uvicorn's graceful shutdown
        "planner": lambda env: _seconds(env, "SWITCHBOARD_PLANNER_GRACE_SECONDS"),
        "worker": lambda env: _seconds(env, "SWITCHBOARD_WORKER_GRACE_SECONDS"),
        "inference": lambda env: _seconds(env, "SWITCHBOARD_INFERENCE_SHUTDOWN_GRACE_S"),
        "triton": lambda env: _flag_seconds(main_container(objects, "triton"), "exit-timeout-secs"),
    }
    for component, grace in graces.items():
        workload = named(objects, "Deployment", component)
        container = main_container(objects, component)
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        drain = pre_stop.get("seconds", 0) + grace(env_values(objects, container))
        assert pod_spec(workload)["terminationGracePeriodSeconds"] >= drain + 5, component
        if component != "worker":  # the only one no Service sends requests to
            assert pre_stop.get("seconds", 0) >= 5, component


def _flag_seconds(container: Manifest, flag: str) -> float:
    for arg in container.get("args", []):
        name, _, value = str(arg).partition("=")
        if name == f"--{flag}":
            return float(value)
    raise AssertionError(f"no --{flag} in {container['name']}'s args")


def test_the_inference_readiness_is_its_grpc_health(objects: tuple[Manifest, ...]) -> None:
    """Its gRPC health is the canary (SERVING only once Triton answered), so readiness and
    start-up ask it; liveness must not, or a Triton outage would restart every pod."""
    container = main_container(objects, "inference")
    assert "grpc" in container["readinessProbe"] and "grpc" in container["startupProbe"]
    assert "grpc" not in container["livenessProbe"]


@pytest.mark.parametrize(
    ("component", "path"),
    [("edge", "/healthz"), ("worker", "/metrics"), ("triton", "/v2/health/ready")],
)
def test_http_readiness_paths_are_the_status_checks(
    objects: tuple[Manifest, ...], component: str, path: str
) -> None:
    assert main_container(objects, component)["readinessProbe"]["httpGet"]["path"] == path


def test_the_dev_overlay_runs_one_of_each_with_its_own_stores() -> None:
    objects = render("dev")
    for workload in workloads(objects):
        assert workload["spec"].get("replicas", 1) == 1, ident(workload)
    valkey = named(objects, "StatefulSet", "valkey")
    args = main_args(valkey)
    assert args[args.index("--appendonly") + 1] == "yes"
    for store in ("valkey", "chroma"):
        claims = named(objects, "StatefulSet", store)["spec"]["volumeClaimTemplates"]
        assert claims, store
    assert not of_kind(objects, "ScaledObject") and not of_kind(objects, "HorizontalPodAutoscaler")
    assert (
        "valkey.switchboard.svc"
        in named(objects, "ConfigMap", SETTINGS)["data"]["SWITCHBOARD_PLANNER_VALKEY_URL"]
    )


def main_args(workload: Manifest) -> list[str]:
    args: list[str] = pod_spec(workload)["containers"][0]["args"]
    return args


def test_the_gpu_overlay_puts_triton_on_gpus() -> None:
    objects = render("gpu")
    triton = named(objects, "Deployment", "triton")
    container = main_container(objects, "triton")
    assert container["image"].startswith("switchboard/triton-gpu:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    spec = pod_spec(triton)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert "--allow-gpu-metrics=false" not in container["args"]
    # In-namespace stores are the dev overlay's only.
    assert not of_kind(objects, "StatefulSet")
    for value in named(objects, "ConfigMap", SETTINGS)["data"].values():
        assert not re.search(r"(valkey|chroma)\.switchboard\.svc", value), value


def _scaled(objects: tuple[Manifest, ...], name: str) -> Manifest:
    return named(objects, "ScaledObject", name)


def test_autoscalers_target_rendered_deployments() -> None:
    objects = render("gpu")
    scalers = of_kind(objects, "ScaledObject") + of_kind(objects, "HorizontalPodAutoscaler")
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in scalers]
    assert sorted(targets) == ["edge", "inference", "triton", "worker"]
    for name in targets:
        deployment = named(objects, "Deployment", name)
        # The autoscaler owns the count; a manifest count would reset it on each apply.
        assert "replicas" not in deployment["spec"], name


def test_replica_bounds_are_sane_and_match_the_budgets() -> None:
    objects = render("gpu")
    for scaled in of_kind(objects, "ScaledObject"):
        spec = scaled["spec"]
        assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"], ident(scaled)
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"], ident(hpa)
    assert named(objects, "Deployment", "planner")["spec"]["replicas"] >= 2


def test_the_worker_scales_on_the_task_queue_the_code_uses() -> None:
    objects = render("gpu")
    (trigger,) = _scaled(objects, "worker")["spec"]["triggers"]
    assert trigger["type"] == "temporal"
    meta: dict[str, Any] = trigger["metadata"]
    worker_env = env_values(objects, main_container(objects, "worker"))
    planner_env = env_values(objects, main_container(objects, "planner"))
    assert meta["taskQueue"] == DEFAULT_TASK_QUEUE
    assert meta["taskQueue"] == worker_env["SWITCHBOARD_WORKER_TASK_QUEUE"]
    assert meta["taskQueue"] == planner_env["SWITCHBOARD_PLANNER_TASK_QUEUE"]
    assert meta["namespace"] == worker_env["SWITCHBOARD_WORKER_TEMPORAL_NAMESPACE"]
    # KEDA reads the endpoint from the worker container's own environment.
    assert meta["endpointFromEnv"] in worker_env
    assert meta["endpointFromEnv"] in variables_read("worker")
    assert int(meta["targetQueueSize"]) > 0


def test_prometheus_triggers_query_metrics_the_code_exports() -> None:
    """The inference trigger's metric names are the ones services/inference registers."""
    from switchboard.inference import admission

    objects = render("gpu")
    (trigger,) = _scaled(objects, "inference")["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    for metric in (admission.IN_FLIGHT, admission.QUEUED):
        name = next(iter(metric.describe())).name
        assert re.search(query.split('__name__=~"')[1].split('"')[0], name), name
    (triton,) = _scaled(objects, "triton")["spec"]["triggers"]
    assert "nv_inference_queue_duration_us" in triton["metadata"]["query"]
    assert triton["metadata"]["metricType"] == "Value"
