"""The processes of one local stack: how each starts, what it needs, how it shows ready.

`up` and the test harness both build their stack here, so tests run exactly what a
developer runs. The specs themselves live in `services` (our processes, Triton through its
wrapper) and `infra` (Valkey, Temporal, Chroma, Envoy); this module puts them in start order.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from . import infra, services
from .ports import Ports
from .replicas import Replicas
from .services import DEV_API_KEYS, DEV_TEST_MODELS, DEV_WEBHOOKS
from .spec import ProcessSpec

__all__ = [
    "DEFAULT_REPLICAS",
    "DEV_API_KEYS",
    "DEV_TEST_MODELS",
    "DEV_WEBHOOKS",
    "INTERNAL_TOKEN_FILE",
    "ProcessSpec",
    "build",
    "default_state_dir",
    "read_internal_token",
    "select",
    "write_internal_token",
]

DEFAULT_REPLICAS = Replicas()

# The shared secret with which the edge (and whoever reads this file: tests, benchmarks, an
# SRE's grpcurl) may name a client to the planner; made afresh by every `up`.
INTERNAL_TOKEN_FILE = "internal-token"


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
    env = {**environ, "PYTHONUNBUFFERED": "1", "SWITCHBOARD_STACK": str(state_dir)}
    return [
        infra.valkey(ports, state_dir, env),
        infra.temporal(ports, state_dir, env),
        infra.chroma(ports, state_dir, env),
        services.triton(ports, state_dir, env),
        *_services(ports, env, internal_token, replicas),
        infra.envoy_proxy(ports, state_dir, env, replicas),
    ]


def _services(
    ports: Ports, env: Mapping[str, str], token: str, replicas: Replicas
) -> list[ProcessSpec]:
    """Every replica of inference, planner, worker and edge, in that order."""
    loopback = "127.0.0.1"
    grpc_front = f"{loopback}:{ports.grpc}"
    temporal = f"{loopback}:{ports.temporal}"
    valkey_url = f"valkey://{loopback}:{ports.valkey}/0"
    triton = f"{loopback}:{ports.triton_grpc}"
    chroma = f"http://{loopback}:{ports.chroma}"

    def each(service: str) -> list[tuple[str, tuple[int, ...]]]:
        return list(zip(replicas.names(service), replicas.ports(ports, service), strict=True))

    return [
        *(
            services.inference(name, port, metrics, env, triton)
            for name, (port, metrics) in each("inference")
        ),
        *(
            services.planner(name, port, metrics, env, temporal, valkey_url, token)
            for name, (port, metrics) in each("planner")
        ),
        *(
            services.worker(name, metrics, env, temporal, valkey_url, grpc_front, chroma)
            for name, (metrics,) in each("worker")
        ),
        *(
            services.edge(name, port, env, grpc_front, valkey_url, token)
            for name, (port,) in each("edge")
        ),
    ]


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


def default_state_dir(ports: Ports, environ: Mapping[str, str] = os.environ) -> Path:
    root = environ.get("SWITCHBOARD_STATE_DIR") or ".switchboard"
    return Path(root).resolve() / f"stack-{ports.base}"
