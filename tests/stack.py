"""Stacks for tests, started by the launcher itself (`switchboard up`), and free ports."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from switchboard.launcher import background
from switchboard.launcher.ports import Ports
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


def start_stack(
    state_dir: Path, ports: Ports, only: Sequence[str] = (), replicas: Replicas | None = None
) -> background.Background:
    try:
        return background.start(state_dir, ports, only, replicas)
    except background.StackFailed as e:
        pytest.fail(str(e))
