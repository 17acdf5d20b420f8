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
    "valkey": 60,
    "chroma": 62,
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
    valkey: int
    chroma: int

    @classmethod
    def at(cls, base: int = DEFAULT_BASE) -> Ports:
        if not 1024 <= base <= 65535 - BLOCK:
            raise ValueError(f"base port must be within 1024..{65535 - BLOCK}, got {base}")
        return cls(base=base, **{name: base + off for name, off in OFFSETS.items()})

    def all(self) -> list[int]:
        return [getattr(self, name) for name in OFFSETS]


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
    """The first block whose every port is free (tests; racy only against other tests)."""
    for base in range(start, stop, BLOCK):
        ports = Ports.at(base)
        if all(port_free(p) for p in ports.all()):
            return ports
    raise OSError("no free block of ports")
