from __future__ import annotations

import socket

import pytest

from switchboard.launcher.ports import BLOCK, OFFSETS, Ports, free_block


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
