"""Stacks for tests, started by the launcher itself (`switchboard up`), and free ports."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchboard.launcher import background, stack
from switchboard.launcher.ports import Ports, port_free
from switchboard.launcher.replicas import Replicas


def free_ports(count: int) -> list[int]:
    # Held open together so the kernel hands out distinct ports.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# Ports of servers a test kills and starts again on the same port. Below the kernel's
# ephemeral range (32768 and up here), where an outgoing connection can take a port as its
# source while its server is down, and below the launcher's blocks (`free_block`, from 20000)
# and `make up`'s default (18000), which take whatever looks free when they start.
RESTART_PORTS = range(10000, 18000)


def restart_ports(count: int) -> list[int]:
    """`count` distinct free ports in RESTART_PORTS, from a random place in it (so that
    tests running at once seldom look at the same ports)."""
    offset = secrets.randbelow(len(RESTART_PORTS))
    found: list[int] = []
    for i in range(len(RESTART_PORTS)):
        port = RESTART_PORTS[(offset + i) % len(RESTART_PORTS)]
        if port_free(port):
            found.append(port)
            if len(found) == count:
                return found
    raise OSError(f"fewer than {count} free ports in {RESTART_PORTS}")


def start_stack(
    state_dir: Path, ports: Ports, only: Sequence[str] = (), replicas: Replicas | None = None
) -> background.Background:
    try:
        return background.start(state_dir, ports, only, replicas)
    except background.StackFailed as e:
        pytest.fail(str(e))


@dataclass(frozen=True)
class Stack:
    """A whole stack that runs: its addresses, token, logs and state."""

    ports: Ports
    state_dir: Path

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def internal_token(self) -> str:
        """What a trusted internal caller sends as x-switchboard-internal to the planner."""
        return stack.read_internal_token(self.state_dir)

    def log(self, name: str) -> str:
        return (self.state_dir / "logs" / f"{name}.log").read_text(errors="replace")

    def state(self) -> dict[str, object]:
        data = json.loads((self.state_dir / "state.json").read_text())
        assert isinstance(data, dict)
        return data


@contextmanager
def running_stack(
    state_dir: Path, ports: Ports, env: Mapping[str, str], replicas: Replicas | None = None
) -> Iterator[Stack]:
    """The whole stack, with `env` in the launcher's environment (it hands its environment
    to every process it starts and restarts), and `replicas` (default: `up`'s); stopped on
    exit."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        proc = start_stack(state_dir, ports, replicas=replicas)
    try:
        yield Stack(ports, state_dir)
    finally:
        proc.stop()
