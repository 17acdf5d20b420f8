"""The stack's processes as `up` builds them: two edge replicas sharing Valkey, one internal
token given to the planner and the edges, and as many replicas of each service as asked."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import yaml

from switchboard.common.settings import Secret
from switchboard.edge.auth import ApiKeys
from switchboard.launcher import stack
from switchboard.launcher.ports import Ports
from switchboard.launcher.replicas import Replicas


def test_two_edges_share_valkey_and_the_internal_token(tmp_path: Path) -> None:
    ports = Ports.at(30000)
    specs = {s.name: s for s in stack.build(ports, tmp_path, {}, internal_token="t0k3n")}
    edges = [specs["edge"], specs["edge-2"]]
    assert [e.ports for e in edges] == [(ports.edge,), (ports.edge_2,)]
    for edge in edges:
        assert edge.needs == ("valkey",)
        assert edge.env["SWITCHBOARD_EDGE_VALKEY_URL"] == f"valkey://127.0.0.1:{ports.valkey}/0"
        assert edge.env["SWITCHBOARD_EDGE_INTERNAL_TOKEN"] == "t0k3n"
        assert edge.env["SWITCHBOARD_EDGE_PORT"] == str(edge.ports[0])
    assert specs["planner"].env["SWITCHBOARD_PLANNER_INTERNAL_TOKENS"] == "t0k3n"
    assert {"edge", "edge-2"} <= set(specs["envoy"].needs)
    assert [s.name for s in stack.select(list(specs.values()), ["edge-2"])] == ["valkey", "edge-2"]


def _start_triton(spec: stack.ProcessSpec, tmp_path: Path) -> list[str]:
    """Runs the Triton spec as the supervisor would, with a stand-in tritonserver (named by
    the wrapper's SWITCHBOARD_TRITONSERVER) that records its argv; returns that argv."""
    record = tmp_path / "argv"
    fake = tmp_path / "fake-tritonserver"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {**spec.env, "SWITCHBOARD_TRITONSERVER": str(fake)}
    subprocess.run(spec.argv(), env=env, check=True, timeout=60)
    return record.read_text(encoding="utf-8").splitlines()


def test_the_local_stack_opts_in_to_the_test_models(tmp_path: Path) -> None:
    specs = {s.name: s for s in stack.build(Ports.at(30000), tmp_path, {})}
    env = specs["inference"].env
    assert env["SWITCHBOARD_INFERENCE_TEST_MODELS"] == "true"
    assert "test-streamer" in env["SWITCHBOARD_INFERENCE_CANARY_ROUTES"].split(",")
    # Triton's repository is rendered when it starts (by its wrapper), with the test models'
    # folders.
    argv = _start_triton(specs["triton"], tmp_path)
    models = tmp_path / "triton" / "models"
    assert f"--model-repository={models.resolve()}" in argv
    assert {"test-streamer", "test-fail", "smollm2-135m-instruct"} <= {
        p.name for p in models.iterdir()
    }


def test_the_environment_can_opt_the_local_stack_out(tmp_path: Path) -> None:
    environ = {
        "SWITCHBOARD_INFERENCE_TEST_MODELS": "false",
        "SWITCHBOARD_INFERENCE_CANARY_ROUTES": "default-chat",
    }
    specs = {s.name: s for s in stack.build(Ports.at(30000), tmp_path, environ)}
    assert specs["inference"].env["SWITCHBOARD_INFERENCE_TEST_MODELS"] == "false"
    assert specs["inference"].env["SWITCHBOARD_INFERENCE_CANARY_ROUTES"] == "default-chat"
    _start_triton(specs["triton"], tmp_path)
    assert not list((tmp_path / "triton" / "models").glob("test-*"))


def test_the_dev_key_is_configured_as_a_digest() -> None:
    assert "sb-dev-key" not in stack.DEV_API_KEYS
    assert ApiKeys.parse(Secret(stack.DEV_API_KEYS)).client_id("Bearer sb-dev-key") == "dev"


def test_each_up_writes_a_new_token_only_its_owner_can_read(tmp_path: Path) -> None:
    first = stack.write_internal_token(tmp_path)
    second = stack.write_internal_token(tmp_path)
    assert len(first) >= 40 and first != second
    assert stack.read_internal_token(tmp_path) == second
    mode = (tmp_path / stack.INTERNAL_TOKEN_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_replicas_are_processes_of_their_own_with_their_own_ports(tmp_path: Path) -> None:
    ports = Ports.at(30000)
    replicas = Replicas(edge=3, planner=2, worker=2, inference=2)
    specs = {s.name: s for s in stack.build(ports, tmp_path, {}, replicas=replicas)}
    expected = {
        "planner": [(30020, 30021), (30023, 30024)],
        "inference": [(30030, 30031), (30032, 30033)],
        "worker": [(30022,), (30043,)],
        "edge": [(30010,), (30011,), (30012,)],
    }
    for service, groups in expected.items():
        assert [specs[n].ports for n in replicas.names(service)] == groups
    taken = [p for s in specs.values() for p in s.ports]
    assert len(taken) == len(set(taken)), "two processes on one port"
    for name in ("planner", "planner-2"):
        env = specs[name].env
        assert (env["SWITCHBOARD_PLANNER_PORT"], env["SWITCHBOARD_PLANNER_METRICS_PORT"]) == tuple(
            map(str, specs[name].ports)
        )
    for name in ("inference", "inference-2"):
        env = specs[name].env
        assert env["SWITCHBOARD_INFERENCE_PORT"] == str(specs[name].ports[0])
        assert env["SWITCHBOARD_INFERENCE_METRICS_PORT"] == str(specs[name].ports[1])
    # Worker replicas differ only in their metrics port: one task queue, one Temporal.
    first, second = specs["worker"].env, specs["worker-2"].env
    assert {k for k in first if first[k] != second.get(k)} == {"SWITCHBOARD_WORKER_METRICS_PORT"}
    assert specs["edge-3"].env["SWITCHBOARD_EDGE_PORT"] == "30012"
    assert set(specs["envoy"].needs) == {
        "edge", "edge-2", "edge-3", "planner", "planner-2", "inference", "inference-2"
    }  # fmt: skip


def test_envoy_lists_every_replica_in_its_cluster(tmp_path: Path) -> None:
    ports = Ports.at(30000)
    replicas = Replicas(edge=3, planner=2, inference=2)
    envoy = next(
        s for s in stack.build(ports, tmp_path, {}, replicas=replicas) if s.name == "envoy"
    )
    envoy.argv()  # renders the bootstrap into the state folder
    config = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    clusters = {
        c["name"]: [
            e["endpoint"]["address"]["socket_address"]["port_value"]
            for e in c["load_assignment"]["endpoints"][0]["lb_endpoints"]
        ]
        for c in config["static_resources"]["clusters"]
    }
    assert clusters == {
        "edge": [30010, 30011, 30012],
        "planner": [30020, 30023],
        "inference": [30030, 30032],
    }
    assert all(c["lb_policy"] == "MAGLEV" for c in config["static_resources"]["clusters"])
    assert all(c["health_checks"] for c in config["static_resources"]["clusters"])


def test_the_default_stack_is_unchanged(tmp_path: Path) -> None:
    names = [s.name for s in stack.build(Ports.at(30000), tmp_path, {})]
    assert names == [
        "valkey", "temporal", "chroma", "triton", "inference", "planner", "worker",
        "edge", "edge-2", "envoy",
    ]  # fmt: skip
