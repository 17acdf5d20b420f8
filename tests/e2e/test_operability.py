"""What an SRE relies on: grpcurl through Envoy, health, metrics, JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import Mesh

pytestmark = pytest.mark.e2e


def _grpcurl(mesh: Mesh, *args: str, flags: tuple[str, ...] = ()) -> str:
    binary = str(Path(sys.executable).parent / "grpcurl")
    done = subprocess.run(
        [binary, "-plaintext", *flags, mesh.grpc, *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_grpcurl_lists_and_describes_through_envoy(mesh: Mesh) -> None:
    services = _grpcurl(mesh, "list").split()
    assert "switchboard.jobs.v1.JobService" in services
    assert "switchboard.inference.v1.InferenceService" in services
    assert "grpc.health.v1.Health" in services
    described = _grpcurl(mesh, "describe", "switchboard.jobs.v1.JobService")
    assert "rpc WatchJob" in described


def test_grpcurl_unary_calls_through_envoy(mesh: Mesh) -> None:
    health = json.loads(_grpcurl(mesh, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"
    internal = ("-H", f"x-switchboard-internal: {mesh.internal_token}")
    listed = json.loads(
        _grpcurl(
            mesh,
            "switchboard.jobs.v1.JobService/ListJobs",
            flags=("-H", "x-client-id: sre", *internal),
        )
    )
    assert isinstance(listed, dict)
    models = json.loads(_grpcurl(mesh, "switchboard.inference.v1.InferenceService/ListModels"))
    assert "test-streamer" in [m["name"] for m in models["models"]]


def test_every_service_exposes_prometheus_metrics(mesh: Mesh) -> None:
    p = mesh.ports
    for url in (
        f"http://127.0.0.1:{p.planner_metrics}/metrics",
        f"http://127.0.0.1:{p.worker_metrics}/metrics",
        f"http://127.0.0.1:{p.inference_metrics}/metrics",
        f"http://127.0.0.1:{p.edge}/metrics",
    ):
        reply = httpx.get(url, timeout=10)
        assert reply.status_code == 200, url
        assert "# TYPE" in reply.text
    planner = httpx.get(f"http://127.0.0.1:{p.planner_metrics}/metrics", timeout=10).text
    assert "switchboard_grpc_requests_total" in planner


def test_service_logs_are_json(mesh: Mesh) -> None:
    for service in ("edge", "planner", "worker", "inference"):
        lines = [x for x in mesh.log(service).splitlines() if x.startswith("{")]
        assert lines, f"{service} wrote no JSON log lines"
        entry = json.loads(lines[0])
        assert entry["service"] and entry["msg"]


def test_metrics_are_not_served_through_the_front_door(mesh: Mesh) -> None:
    reply = httpx.get(f"{mesh.public}/metrics", timeout=10)
    assert reply.status_code == 404
    assert reply.json()["error"]["details"][0]["reason"] == "ROUTE_NOT_FOUND"


def test_planner_refuses_a_client_id_without_the_internal_token(mesh: Mesh) -> None:
    binary = str(Path(sys.executable).parent / "grpcurl")
    done = subprocess.run(
        [binary, "-plaintext", "-H", "x-client-id: dev", mesh.grpc,
         "switchboard.jobs.v1.JobService/ListJobs"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Unauthenticated" in done.stderr and "x-switchboard-internal" in done.stderr
