from __future__ import annotations

import socket
from pathlib import Path

import pytest

from switchboard.launcher.ports import BLOCK, OFFSETS, REPLICA_OFFSETS, Ports, free_block
from tests.stack import RESTART_PORTS, restart_ports


def test_every_port_of_a_block_is_distinct_and_inside_it() -> None:
    ports = Ports.at(18000)
    assert len(set(ports.all())) == len(OFFSETS)
    assert all(18000 <= p < 18000 + BLOCK for p in ports.all())


def test_two_blocks_never_overlap() -> None:
    assert not set(Ports.at(18000).all()) & set(Ports.at(18000 + BLOCK).all())


def test_base_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        Ports.at(80)


def test_free_block_skips_a_block_with_a_listener() -> None:
    first = free_block()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", first.valkey))
        listener.listen()
        chosen = free_block(start=first.base)
    assert chosen.base != first.base
    assert first.valkey not in chosen.all()


def test_first_replicas_keep_the_fixed_offsets() -> None:
    ports = Ports.at(18000)
    assert ports.replica("edge", 1) == (ports.edge,)
    assert ports.replica("edge", 2) == (ports.edge_2,)
    assert ports.replica("planner", 1) == (ports.planner, ports.planner_metrics)
    assert ports.replica("worker", 1) == (ports.worker_metrics,)
    assert ports.replica("inference", 1) == (ports.inference, ports.inference_metrics)


def test_every_replica_port_is_distinct_inside_the_block_and_clear_of_the_others() -> None:
    fixed_by_first_replicas = {off for groups in REPLICA_OFFSETS.values() for off in groups[0]}
    fixed_by_first_replicas.add(OFFSETS["edge_2"])
    extra = [off for groups in REPLICA_OFFSETS.values() for group in groups for off in group]
    assert len(extra) == len(set(extra))
    assert all(0 <= off < BLOCK for off in extra)
    others = set(OFFSETS.values()) - fixed_by_first_replicas
    assert not others & set(extra), "a replica would take a port of another process"


def test_a_replica_beyond_the_plan_has_no_ports() -> None:
    ports = Ports.at(18000)
    with pytest.raises(IndexError):
        ports.replica("planner", len(REPLICA_OFFSETS["planner"]) + 1)
    with pytest.raises(IndexError):
        ports.replica("edge", 0)


def test_free_block_also_skips_a_block_whose_spare_offsets_are_taken() -> None:
    first = free_block()
    spare = first.replica("planner", 2)[0]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", spare))
        listener.listen()
        chosen = free_block(start=first.base)
    assert chosen.base != first.base


def test_restart_ports_are_free_distinct_and_outside_the_ephemeral_range() -> None:
    """A server a test kills and starts again must find its port free: none of these is in
    the range the kernel gives outgoing connections, nor in the launcher's blocks."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = restart_ports(4)
    assert len(set(ports)) == 4
    assert all(p in RESTART_PORTS and p < low and p < 18000 for p in ports)
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Valkey and Temporal do
            s.bind(("127.0.0.1", port))
