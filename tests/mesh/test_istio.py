"""mesh/istio: Istio's part of the deployment, checked without a cluster.

Every object validates against the real Istio CRD schema of its apiVersion; every host is a
rendered Service and every principal a rendered ServiceAccount; the hash keys are the code's
(switchboard.common.hashkeys) and the front door routes, times out, hashes and retries
every path as the local Envoy does (mesh/envoy/envoy.yaml, rendered by the launcher); the
EnvoyFilter's route patches are valid Envoy configuration (Envoy's own `--mode validate`)
and rewrite real paths to the job id with RE2's semantics; the AuthorizationPolicies let
exactly the calls the code makes through.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from switchboard.common import hashkeys
from switchboard.edge.server import KEEP_ALIVE_SECONDS as EDGE_KEEP_ALIVE_SECONDS
from switchboard.launcher.envoy import EnvoyPorts, envoy_binary, render_config

from . import crds, istio
from .manifests import (
    NAME_LABEL,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    Manifest,
    ident,
    named,
    of_kind,
    render,
    render_dir,
    workloads,
)

ISTIO = ROOT / "mesh" / "istio"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# The one caller from outside the namespace: Prometheus, scraping /metrics over mTLS.
# docs/deploy.md says how to replace it with your Prometheus's service account.
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus"
GATEWAY = "switchboard-gateway"
# The local Envoy's public route names and the VirtualService's http route names.
LOCAL_TO_ISTIO = {
    "job_events": "edge-job-events",
    "job": "edge-job",
    "chat": "edge-chat",
    "internal_only": "edge-metrics",
    "default": "edge-default",
}
# The local internal listener's routes and the hosts that play their part in Istio.
LOCAL_INTERNAL = {"jobs": "planner", "inference": "inference"}


def objects() -> tuple[Manifest, ...]:
    return render_dir(ISTIO)


def kind(name: str) -> list[Manifest]:
    return of_kind(objects(), name)


def fqdn(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def rules_by_host() -> dict[str, Manifest]:
    return {r["spec"]["host"]: r for r in kind("DestinationRule")}


def public() -> Manifest:
    return named(objects(), "VirtualService", "edge-public")


@functools.cache
def local_envoy() -> Mapping[str, Any]:
    text = render_config(EnvoyPorts(18000, 18001, 18002), edges=[1], planners=[2], inferences=[3])
    config: Mapping[str, Any] = yaml.safe_load(text)
    return config


def local_route_config(listener: str) -> Mapping[str, Any]:
    (found,) = [x for x in local_envoy()["static_resources"]["listeners"] if x["name"] == listener]
    hcm = found["filter_chains"][0]["filters"][0]["typed_config"]
    route_config: Mapping[str, Any] = hcm["route_config"]
    return route_config


def local_cluster(name: str) -> Mapping[str, Any]:
    (found,) = [c for c in local_envoy()["static_resources"]["clusters"] if c["name"] == name]
    return found  # type: ignore[no-any-return]


def seconds(duration: str | None) -> float | None:
    return None if duration is None else float(duration.removesuffix("s"))


# Schemas.


def test_every_istio_object_validates_against_its_crd() -> None:
    custom = [o for o in objects() if crds.is_custom(o)]
    wanted = {"Gateway", "VirtualService", "DestinationRule", "EnvoyFilter"}
    wanted |= {"PeerAuthentication", "AuthorizationPolicy", "Telemetry"}
    assert wanted <= {o["kind"] for o in custom}
    errors = []
    for o in custom:
        try:
            crds.validate(o)
        except jsonschema.ValidationError as e:
            errors.append(f"{ident(o)} at {list(e.absolute_path)}: {e.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "spoil",
    [
        # Two hash keys at once: the CRD's oneOf refuses it.
        lambda dr: dr["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"].update(
            useSourceIp=True
        ),
        # A misspelt field is refused, not pruned.
        lambda dr: dr["spec"]["trafficPolicy"].update(outlierDetections={}),
    ],
)
def test_the_crd_check_refuses_a_broken_destination_rule(spoil: Any) -> None:
    rule = copy.deepcopy(named(objects(), "DestinationRule", "planner"))
    crds.validate(rule)
    spoil(rule)
    with pytest.raises(jsonschema.ValidationError):
        crds.validate(rule)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_applies_the_istio_resources(overlay: str) -> None:
    rendered = {(o["kind"], o["metadata"]["name"]) for o in render(overlay)}
    missing = [ident(o) for o in objects() if (o["kind"], o["metadata"]["name"]) not in rendered]
    assert not missing


def test_every_istio_object_is_in_the_namespace() -> None:
    assert {o["metadata"].get("namespace") for o in objects()} == {NAMESPACE}


# Hosts and workloads.


def _service(services: Mapping[str, Manifest], host: str) -> Manifest:
    name, _, rest = host.partition(".")
    assert rest == f"{NAMESPACE}.svc.cluster.local", f"{host} is not a fully qualified Service"
    assert name in services, f"{host}: no Service {name!r} in the render"
    return services[name]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_host_is_a_rendered_service_and_port(overlay: str) -> None:
    services = {s["metadata"]["name"]: s for s in of_kind(render(overlay), "Service")}
    for rule in kind("DestinationRule"):
        _service(services, rule["spec"]["host"])
    for vs in kind("VirtualService"):
        for host in vs["spec"]["hosts"]:
            if host != "*":
                _service(services, host)
        for route in vs["spec"]["http"]:
            for destination in route.get("route", []):
                dest = destination["destination"]
                ports = {p["port"] for p in _service(services, dest["host"])["spec"]["ports"]}
                assert dest["port"]["number"] in ports, f"{vs['metadata']['name']}: {dest}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_subset_selects_the_pods_of_its_service(overlay: str) -> None:
    rendered = render(overlay)
    services = {s["metadata"]["name"]: s for s in of_kind(rendered, "Service")}
    for rule in kind("DestinationRule"):
        service = _service(services, rule["spec"]["host"])
        pods = [
            w["spec"]["template"]["metadata"]["labels"]
            for w in workloads(rendered)
            if _subset(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        for subset in rule["spec"].get("subsets", []):
            assert pods and all(_subset(subset["labels"], labels) for labels in pods)


def _subset(wanted: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def test_the_gateway_and_envoy_filter_select_the_gateway_pods() -> None:
    deployment = named(objects(), "Deployment", GATEWAY)
    pod = deployment["spec"]["template"]
    (gateway,) = kind("Gateway")
    assert _subset(gateway["spec"]["selector"], pod["metadata"]["labels"])
    for envoy_filter in kind("EnvoyFilter"):
        assert _subset(
            envoy_filter["spec"]["workloadSelector"]["labels"], pod["metadata"]["labels"]
        )
    container_ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert {s["port"]["number"] for s in gateway["spec"]["servers"]} <= container_ports
    assert pod["spec"]["serviceAccountName"] == GATEWAY
    assert public()["spec"]["gateways"] == [gateway["metadata"]["name"]]


# Hash keys: the code's, and the local Envoy's.


def test_every_hash_header_is_one_the_code_sends() -> None:
    sent = {hashkeys.JOB_ID_HEADER, hashkeys.SESSION_ID_HEADER}
    rules = rules_by_host()
    planner = istio.consistent_hash(rules[fqdn("planner")], None)
    assert planner and planner["httpHeaderName"] == hashkeys.JOB_ID_HEADER
    inference = istio.consistent_hash(rules[fqdn("inference")], None)
    assert inference and inference["httpHeaderName"] == hashkeys.SESSION_ID_HEADER
    chat = istio.consistent_hash(rules[fqdn("edge")], "chat")
    assert chat and chat["httpHeaderName"] == hashkeys.SESSION_ID_HEADER
    headers = [
        ch["httpHeaderName"]
        for rule in kind("DestinationRule")
        for ch in [
            istio.consistent_hash(rule, None),
            *(istio.consistent_hash(rule, s["name"]) for s in rule["spec"].get("subsets", [])),
        ]
        if ch and "httpHeaderName" in ch
    ]
    assert set(headers) <= sent
    tags = kind("Telemetry")[0]["spec"]["tracing"][0]["customTags"]
    assert {t["header"]["name"] for t in tags.values()} == sent


def path_hash_policies() -> list[Mapping[str, Any]]:
    return [
        policy["header"]
        for envoy_filter in kind("EnvoyFilter")
        for patch in envoy_filter["spec"]["configPatches"]
        for policy in patch["patch"]["value"].get("route", {}).get("hash_policy", [])
    ]


def test_the_envoy_filter_hashes_the_path_with_the_codes_regex() -> None:
    policies = path_hash_policies()
    assert len(policies) == 2  # edge-job-events and edge-job
    for header in policies:
        assert header["header_name"] == ":path"
        assert header["regex_rewrite"] == {
            "pattern": {"regex": hashkeys.JOB_ID_PATH_REGEX},
            "substitution": hashkeys.JOB_ID_PATH_SUBSTITUTION,
        }


def test_the_envoy_filter_patches_only_routes_that_exist() -> None:
    names = {route["name"] for route in public()["spec"]["http"]}
    for envoy_filter in kind("EnvoyFilter"):
        for patch in envoy_filter["spec"]["configPatches"]:
            name = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
            assert name in names, f"{envoy_filter['metadata']['name']} patches no route: {name}"


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/jobs/abc/events?x=1", "abc"),
        ("/v1/jobs/abc/events", "abc"),
        ("/v1/jobs/abc", "abc"),
        ("/v1/jobs/abc?wait=1", "abc"),
        ("/v1/jobs/abc/result", "abc"),
        ("/v1/jobs/abc/cancel", "abc"),
        ("/v1/jobs/abc#top", "abc"),
        ("/v1/jobs/a%2Fb/events", "a%2Fb"),
        # Paths that name no job are hashed whole (and route elsewhere anyway).
        ("/v1/jobs", "/v1/jobs"),
        ("/v1/jobs/", "/v1/jobs/"),
        ("/v1/jobsabc", "/v1/jobsabc"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        # RE2's $ is the very end and its . never matches a newline: a sub-resource with a
        # trailing newline does not match (Python's $ would, leaving "abc\n").
        ("/v1/jobs/abc/events\n", "/v1/jobs/abc/events\n"),
        # A negated class does match one, in RE2 as in Python.
        ("/v1/jobs/abc\n", "abc\n"),
    ],
)
def test_the_path_hash_rewrites_to_the_job_id(path: str, key: str) -> None:
    for header in path_hash_policies():
        pattern = header["regex_rewrite"]["pattern"]["regex"]
        assert istio.rewrite(pattern, header["regex_rewrite"]["substitution"], path) == key


PUBLIC_PATHS = [
    "/v1/jobs/abc/events",
    "/v1/jobs/abc/events/",
    "/v1/jobs/abc/events?x=1",
    "/v1/jobs/abc",
    "/v1/jobs/abc/result",
    "/v1/jobs/abc/cancel",
    "/v1/jobs",
    "/v1/jobs?pageSize=2",
    "/v1/chat/completions",
    "/v1/chat/ws",
    "/v1/embeddings",
    "/v1/models",
    "/v1/pipelines",
    "/v1/sessions/s1",
    "/metrics",
    "/metrics?format=text",
    "/healthz",
    "/",
]


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_the_gateway_routes_each_path_as_the_local_envoy(path: str) -> None:
    route_config = local_route_config("public_http")
    (vhost,) = route_config["virtual_hosts"]
    local = istio.envoy_route(vhost["routes"], path)
    ours = istio.istio_route(public(), path)
    assert ours["name"] == LOCAL_TO_ISTIO[local["name"]]
    if "direct_response" in local:
        assert ours["directResponse"]["status"] == local["direct_response"]["status"]
        body = ours["directResponse"]["body"]["string"]
        assert json.loads(body) == json.loads(local["direct_response"]["body"]["inline_string"])
        return
    patches = istio.route_patches(kind("EnvoyFilter"), ours["name"])
    assert istio.istio_hash(ours, rules_by_host(), kind("EnvoyFilter")) == istio.envoy_hash(local)
    assert seconds(ours["timeout"]) == seconds(local["route"]["timeout"])
    idle = [p["route"]["idle_timeout"] for p in patches if "idle_timeout" in p.get("route", {})]
    assert [seconds(i) for i in idle] == [
        seconds(t) for t in [local["route"].get("idle_timeout")] if t is not None
    ]
    removed = ours["headers"]["request"]["remove"]
    assert sorted(removed) == sorted(route_config["request_headers_to_remove"])
    _same_retries(ours, patches, vhost["retry_policy"])


def _same_retries(
    ours: Mapping[str, Any], patches: list[Mapping[str, Any]], local: Mapping[str, Any]
) -> None:
    assert ours["retries"]["retryOn"] == local["retry_on"]
    assert ours["retries"]["attempts"] == local["num_retries"]
    (patch,) = [p["route"]["retry_policy"] for p in patches if "retry_policy" in p["route"]]
    assert patch["retry_host_predicate"] == local["retry_host_predicate"]
    assert patch["host_selection_retry_max_attempts"] == local["host_selection_retry_max_attempts"]


@pytest.mark.parametrize(("local_name", "service"), sorted(LOCAL_INTERNAL.items()))
def test_the_sidecars_route_grpc_as_the_local_envoy(local_name: str, service: str) -> None:
    (vhost,) = local_route_config("internal_grpc")["virtual_hosts"]
    (local,) = [r for r in vhost["routes"] if r["name"] == local_name]
    vs = named(objects(), "VirtualService", service)
    (ours,) = vs["spec"]["http"]
    assert [d["destination"]["host"] for d in ours["route"]] == [fqdn(service)]
    assert istio.istio_hash(ours, rules_by_host(), kind("EnvoyFilter")) == istio.envoy_hash(local)
    assert seconds(ours["timeout"]) == seconds(local["route"]["timeout"]) == 0
    assert ours["retries"]["retryOn"] == vhost["retry_policy"]["retry_on"]
    assert ours["retries"]["attempts"] == vhost["retry_policy"]["num_retries"]


@pytest.mark.parametrize("service", ["edge", "planner", "inference"])
def test_limits_and_outlier_detection_equal_the_local_clusters(service: str) -> None:
    cluster = local_cluster(service)
    policy = rules_by_host()[fqdn(service)]["spec"]["trafficPolicy"]
    assert _hash_algorithm(policy["loadBalancer"]["consistentHash"]) == _local_algorithm(cluster)
    (breakers,) = cluster["circuit_breakers"]["thresholds"]
    pool = policy["connectionPool"]
    assert pool["tcp"]["maxConnections"] == breakers["max_connections"]
    assert seconds(pool["tcp"]["connectTimeout"]) == seconds(cluster["connect_timeout"])
    assert pool["http"]["http1MaxPendingRequests"] == breakers["max_pending_requests"]
    assert pool["http"]["http2MaxRequests"] == breakers["max_requests"]
    outliers, local = policy["outlierDetection"], cluster["outlier_detection"]
    assert outliers["consecutive5xxErrors"] == local["consecutive_5xx"]
    assert outliers["consecutiveGatewayErrors"] == local["consecutive_gateway_failure"]
    assert seconds(outliers["interval"]) == seconds(local["interval"])
    assert seconds(outliers["baseEjectionTime"]) == seconds(local["base_ejection_time"])
    assert outliers["maxEjectionPercent"] == local["max_ejection_percent"]


def _local_algorithm(cluster: Mapping[str, Any]) -> tuple[str, int]:
    if cluster["lb_policy"] == "MAGLEV":
        return ("maglev", cluster["maglev_lb_config"]["table_size"])
    if cluster["lb_policy"] == "RING_HASH":
        return ("ring", cluster["ring_hash_lb_config"]["minimum_ring_size"])
    raise AssertionError(f"{cluster['name']} does not hash: {cluster['lb_policy']}")


def _hash_algorithm(consistent_hash: Mapping[str, Any]) -> tuple[str, int]:
    if "maglev" in consistent_hash:
        return ("maglev", consistent_hash["maglev"]["tableSize"])
    return ("ring", consistent_hash["ringHash"]["minimumRingSize"])


def test_every_hashing_rule_uses_the_local_algorithm() -> None:
    local = _local_algorithm(local_cluster("edge"))
    for rule in kind("DestinationRule"):
        for subset in [None, *(s["name"] for s in rule["spec"].get("subsets", []))]:
            found = istio.consistent_hash(rule, subset)
            if found is not None:
                assert _hash_algorithm(found) == local, rule["metadata"]["name"]


# The EnvoyFilter's values are free-form to Istio's schema: Envoy itself checks them.


def _bootstrap(routes: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "check",
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]},
    }
    endpoint = {
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}
    }
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "check",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "edge",
                    "type": "STATIC",
                    "lb_policy": "RING_HASH",
                    "load_assignment": {
                        "cluster_name": "edge",
                        "endpoints": [{"lb_endpoints": [endpoint]}],
                    },
                }
            ],
        }
    }


def _patched_routes() -> list[dict[str, Any]]:
    """Each patched route as Istio would send it, reduced to what the patch touches: a route
    to the edge with Istio's retry policy, MERGEd with the patch (repeated fields append)."""
    routes = []
    for envoy_filter in kind("EnvoyFilter"):
        for patch in envoy_filter["spec"]["configPatches"]:
            name = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
            base = {
                "name": name,
                "match": {"prefix": "/"},
                "route": {
                    "cluster": "edge",
                    "retry_policy": {"retry_on": "connect-failure", "num_retries": 2},
                },
            }
            # A copy: the render is shared between tests, and one test spoils a route.
            routes.append(_merge(base, copy.deepcopy(patch["patch"]["value"])))
    return routes


def _merge(into: Mapping[str, Any], value: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(into)
    for key, new in value.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out[key] = _merge(old, new)
        elif isinstance(old, list) and isinstance(new, list):
            out[key] = [*old, *new]
        else:
            out[key] = new
    return out


def _envoy_validates(
    tmp_path: Path, routes: Sequence[Mapping[str, Any]]
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bootstrap.yaml"
    config.write_text(json.dumps(_bootstrap(routes)), encoding="utf-8")
    binary = str(envoy_binary())
    argv = [binary, "--mode", "validate", "--config-path", str(config), "--disable-hot-restart"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_envoy_accepts_the_route_patches(tmp_path: Path) -> None:
    routes = _patched_routes()
    assert len(routes) == len(LOCAL_TO_ISTIO) - 1  # every routed public route, not /metrics
    result = _envoy_validates(tmp_path, routes)
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_refuses_a_broken_route_patch(tmp_path: Path) -> None:
    routes = _patched_routes()
    routes[0]["route"]["hash_policy"][0]["header"]["regex_rewrite"]["substitutions"] = "x"
    result = _envoy_validates(tmp_path, routes)
    assert result.returncode != 0


# Security.


def test_mtls_is_strict_for_the_whole_namespace() -> None:
    (peer,) = kind("PeerAuthentication")
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}


def _principal(principal: str) -> tuple[str, str]:
    trust, ns_key, namespace, sa_key, account = principal.split("/")
    assert (trust, ns_key, sa_key) == ("cluster.local", "ns", "sa"), principal
    return namespace, account


def principals() -> set[str]:
    return {
        p
        for policy in kind("AuthorizationPolicy")
        for rule in policy["spec"].get("rules", [])
        for source in rule.get("from", [])
        for p in source["source"].get("principals", [])
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_principal_is_a_rendered_service_account(overlay: str) -> None:
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in of_kind(render(overlay), "ServiceAccount")
    }
    for principal in principals() - {PROMETHEUS}:
        assert _principal(principal) in accounts, principal


def test_the_outside_principal_is_documented() -> None:
    assert principals() - {PROMETHEUS} != principals()
    assert PROMETHEUS in DEPLOY_DOC.read_text(encoding="utf-8")


def pod_labels(overlay: str) -> dict[str, Mapping[str, str]]:
    return {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"]
        for w in workloads(render(overlay))
    }


def test_every_policy_selects_a_workload_and_names_its_ports() -> None:
    for policy in kind("AuthorizationPolicy"):
        if "selector" not in policy["spec"]:
            continue
        wanted = policy["spec"]["selector"]["matchLabels"]
        selected = [
            w
            for o in OVERLAYS
            for w in workloads(render(o))
            if _subset(wanted, w["spec"]["template"]["metadata"]["labels"])
        ]
        assert selected, f"{policy['metadata']['name']} selects nothing in any overlay"
        ports = {
            str(p["containerPort"])
            for w in selected
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for rule in policy["spec"]["rules"]:
            for to in rule.get("to", []):
                assert set(to["operation"].get("ports", [])) <= ports, policy["metadata"]["name"]


def sa(name: str) -> str:
    return f"cluster.local/ns/{NAMESPACE}/sa/{name}"


JOBS = "/switchboard.jobs.v1.JobService/WatchJob"
GENERATE = "/switchboard.inference.v1.InferenceService/Generate"
HEALTH = "/grpc.health.v1.Health/Check"
# (caller, workload, request, allowed): the calls the code makes, and some it must not.
CALLS = [
    (None, GATEWAY, istio.Request(None, 80, "/v1/jobs", "POST"), True),
    (None, GATEWAY, istio.Request(None, 443, "/v1/jobs/abc/events", "GET"), True),
    (None, GATEWAY, istio.Request(None, 15000, "/config_dump", "GET"), False),
    (GATEWAY, "edge", istio.Request(sa(GATEWAY), 8080, "/v1/jobs/abc", "GET"), True),
    (GATEWAY, "edge", istio.Request(sa(GATEWAY), 8080, "/metrics", "GET"), False),
    ("planner", "edge", istio.Request(sa("planner"), 8080, "/v1/jobs", "POST"), False),
    (None, "edge", istio.Request(None, 8080, "/v1/jobs", "POST"), False),
    ("edge", "planner", istio.Request(sa("edge"), 50051, JOBS, "POST"), True),
    ("edge", "planner", istio.Request(sa("edge"), 50051, HEALTH, "POST"), True),
    ("edge", "planner", istio.Request(sa("edge"), 9090, "/metrics", "GET"), False),
    ("worker", "planner", istio.Request(sa("worker"), 50051, JOBS, "POST"), False),
    (GATEWAY, "planner", istio.Request(sa(GATEWAY), 50051, JOBS, "POST"), False),
    ("edge", "inference", istio.Request(sa("edge"), 50051, GENERATE, "POST"), True),
    ("worker", "inference", istio.Request(sa("worker"), 50051, GENERATE, "POST"), True),
    ("planner", "inference", istio.Request(sa("planner"), 50051, GENERATE, "POST"), False),
    ("worker", "inference", istio.Request(sa("worker"), 50051, JOBS, "POST"), False),
    (
        "inference",
        "triton",
        istio.Request(
            sa("inference"), 8001, "/inference.GRPCInferenceService/ModelStreamInfer", "POST"
        ),
        True,
    ),
    (
        "worker",
        "triton",
        istio.Request(sa("worker"), 8001, "/inference.GRPCInferenceService/ModelInfer", "POST"),
        False,
    ),
    ("edge", "triton", istio.Request(sa("edge"), 8000, "/v2/health/ready", "GET"), False),
    ("edge", "valkey", istio.Request(sa("edge"), 6379), True),
    ("worker", "valkey", istio.Request(sa("worker"), 6379), True),
    ("inference", "valkey", istio.Request(sa("inference"), 6379), False),
    ("worker", "chroma", istio.Request(sa("worker"), 8000, "/api/v2/heartbeat", "GET"), True),
    ("edge", "chroma", istio.Request(sa("edge"), 8000, "/api/v2/heartbeat", "GET"), False),
    ("worker", "worker", istio.Request(sa("worker"), 9090, "/metrics", "GET"), False),
    *(
        ("prometheus", workload, istio.Request(PROMETHEUS, port, "/metrics", "GET"), True)
        for workload, port in [
            ("edge", 8080),
            ("planner", 9090),
            ("worker", 9090),
            ("inference", 9090),
            ("triton", 8002),
        ]
    ),
    ("prometheus", "planner", istio.Request(PROMETHEUS, 50051, JOBS, "POST"), False),
    ("prometheus", "edge", istio.Request(PROMETHEUS, 8080, "/v1/jobs", "GET"), False),
]


@pytest.mark.parametrize(("caller", "workload", "request_", "expected"), CALLS)
def test_who_may_call_whom(
    caller: str | None, workload: str, request_: istio.Request, expected: bool
) -> None:
    labels = pod_labels("dev")[workload]
    assert istio.allowed(kind("AuthorizationPolicy"), labels, request_) is expected


def test_a_workload_without_a_policy_of_its_own_refuses_everything() -> None:
    labels = {NAME_LABEL: "something-new"}
    for principal in [sa("edge"), PROMETHEUS, None]:
        assert not istio.allowed(
            kind("AuthorizationPolicy"), labels, istio.Request(principal, 8080, "/", "GET")
        )


# Telemetry.


def istiod_values() -> Mapping[str, Any]:
    values: Mapping[str, Any] = yaml.safe_load(
        (ISTIO / "istiod-values.yaml").read_text(encoding="utf-8")
    )
    return values


def test_telemetry_providers_are_defined_in_the_mesh_config() -> None:
    (telemetry,) = kind("Telemetry")
    used = {
        p["name"]
        for section in ("tracing", "accessLogging")
        for entry in telemetry["spec"][section]
        for p in entry["providers"]
    }
    defined = {p["name"] for p in istiod_values()["meshConfig"]["extensionProviders"]}
    assert used <= defined


def test_the_access_log_is_the_local_one_without_the_query() -> None:
    (provider,) = [
        p for p in istiod_values()["meshConfig"]["extensionProviders"] if "envoyFileAccessLog" in p
    ]
    labels = provider["envoyFileAccessLog"]["logFormat"]["labels"]
    hcm = local_envoy()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    local = hcm["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert {k: v for k, v in labels.items() if k in local} == local
    for value in labels.values():
        assert "PATH)%" not in value or value.startswith("%REQ_WITHOUT_QUERY(")


def test_the_proxies_close_idle_edge_connections_before_the_edge_does() -> None:
    """Otherwise a proxy may reuse a keep-alive connection at the moment uvicorn closes it,
    and the request dies with a 503 "connection termination"."""
    options = local_cluster("edge")["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    local_idle = seconds(http["common_http_protocol_options"]["idle_timeout"])
    rule = named(objects(), "DestinationRule", "edge")
    istio_idle = seconds(rule["spec"]["trafficPolicy"]["connectionPool"]["http"]["idleTimeout"])
    assert local_idle is not None and istio_idle is not None
    assert max(local_idle, istio_idle) < EDGE_KEEP_ALIVE_SECONDS
    assert "http_protocol_options" in http["explicit_http_config"]  # still HTTP/1.1
