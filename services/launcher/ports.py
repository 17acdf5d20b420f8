"""Where each process of one stack listens: a block of ports from one base.

A second stack on another base never collides with the first, and tests pick a free
block so they can run beside a developer's `switchboard up`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

BLOCK = 64
DEFAULT_BASE = 18000


# Offsets within a block; the comment says who listens there.
OFFSETS = {
    "public": 0,  # Envoy: REST and SSE, the front door
    "grpc": 1,  # Envoy: internal gRPC, grpcurl
    "envoy_admin": 2,
    "edge": 10,
    "edge_2": 11,  # the second edge replica
    "planner": 20,
    "planner_metrics": 21,
    "worker_metrics": 22,
    "inference": 30,
    "inference_metrics": 31,
    "triton_grpc": 40,
    "triton_http": 41,
    "triton_metrics": 42,
    "temporal": 50,
    "temporal_http": 51,
    "temporal_metrics": 52,
    "temporal_ui": 53,
    "trace_ui": 54,  # Phoenix (`up --with tracing`): web UI, REST API, OTLP over HTTP
    "trace_otlp": 55,  # Phoenix: OTLP over gRPC, where the services export their spans
    "valkey": 60,
    "chroma": 62,
}

# Where each replica of a replicated service listens, in replica order: the first replica
# keeps the offsets above (so a default stack is unchanged); the others take spare offsets
# of the block, so the number of replicas a block holds is the length of each tuple.
# Planner and inference replicas take (gRPC, metrics) pairs; a worker only serves metrics;
# an edge serves its metrics on its one HTTP port.
REPLICA_OFFSETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "edge": tuple((off,) for off in range(10, 20)),
    "planner": ((20, 21), (23, 24), (25, 26), (27, 28)),
    "worker": ((22,), *((off,) for off in range(43, 50))),
    "inference": tuple((off, off + 1) for off in range(30, 40, 2)),
}


@dataclass(frozen=True)
class Ports:
    base: int
    public: int
    grpc: int
    envoy_admin: int
    edge: int
    edge_2: int
    planner: int
    planner_metrics: int
    worker_metrics: int
    inference: int
    inference_metrics: int
    triton_grpc: int
    triton_http: int
    triton_metrics: int
    temporal: int
    temporal_http: int
    temporal_metrics: int
    temporal_ui: int
    trace_ui: int
    trace_otlp: int
    valkey: int
    chroma: int

    @classmethod
    def at(cls, base: int = DEFAULT_BASE) -> Ports:
        if not 1024 <= base <= 65535 - BLOCK:
            raise ValueError(f"base port must be within 1024..{65535 - BLOCK}, got {base}")
        return cls(base=base, **{name: base + off for name, off in OFFSETS.items()})

    def all(self) -> list[int]:
        """The fixed ports (first replicas); `replica` gives the others."""
        return [getattr(self, name) for name in OFFSETS]

    def replica(self, service: str, index: int) -> tuple[int, ...]:
        """The ports of replica `index` (1 is the first) of `service`, as REPLICA_OFFSETS
        orders them; IndexError beyond what the block holds."""
        if index < 1:
            raise IndexError(f"replicas count from 1, got {index}")
        return tuple(self.base + off for off in REPLICA_OFFSETS[service][index - 1])


def port_free(port: int) -> bool:
    # Binding, not connecting: a connect to a free port in the ephemeral range can
    # succeed by connecting to itself.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(start: int = 20000, stop: int = 60000) -> Ports:
    """The first block whose every port is free, spare offsets included, so a stack with
    extra replicas fits too (tests; racy only against other tests)."""
    for base in range(start, stop, BLOCK):
        if all(port_free(p) for p in range(base, base + BLOCK)):
            return Ports.at(base)
    raise OSError("no free block of ports")
