"""`--replicas`: parsing, limits, the names of the replicas and their ports."""

from __future__ import annotations

import pytest

from switchboard.launcher.ports import REPLICA_OFFSETS, Ports
from switchboard.launcher.replicas import Replicas


def test_the_default_is_two_edges_and_one_of_everything_else() -> None:
    assert Replicas().counts() == {"edge": 2, "planner": 1, "worker": 1, "inference": 1}
    assert Replicas.parse("") == Replicas()
    assert Replicas().names("edge") == ["edge", "edge-2"]
    assert Replicas().names("planner") == ["planner"]


def test_parse_names_each_service_and_keeps_the_default_for_the_rest() -> None:
    replicas = Replicas.parse("planner=2, inference=2,worker=2,edge=3")
    assert replicas == Replicas(edge=3, planner=2, worker=2, inference=2)
    assert replicas.names("planner") == ["planner", "planner-2"]
    assert replicas.names("edge") == ["edge", "edge-2", "edge-3"]
    assert Replicas.parse("worker=3") == Replicas(worker=3)
    assert Replicas.parse(replicas.flag()) == replicas


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("planner", "expected SERVICE=N"),
        ("triton=2", "expected SERVICE=N"),
        ("planner=two", "not a whole number"),
        ("planner=2,planner=3", "named twice"),
        ("planner=0", "within 1..4"),
        ("edge=11", "within 1..10"),
        ("inference=6", "within 1..5"),
        ("worker=9", "within 1..8"),
    ],
)
def test_parse_refuses_what_cannot_run_and_says_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Replicas.parse(text)


def test_the_most_each_block_holds_is_what_the_port_plan_has_room_for() -> None:
    most = Replicas(**{s: len(groups) for s, groups in REPLICA_OFFSETS.items()})
    ports = Ports.at(18000)
    every = most.all_ports(ports)
    assert len(every) == len(set(every))
    assert all(ports.base <= p < ports.base + 64 for p in every)


def test_ports_follow_the_names() -> None:
    ports = Ports.at(18000)
    replicas = Replicas(planner=3)
    assert replicas.ports(ports, "planner") == [(18020, 18021), (18023, 18024), (18025, 18026)]


def test_a_running_stack_s_replicas_come_back_from_its_process_names() -> None:
    names = ["valkey", "planner", "planner-2", "planner-3", "edge", "edge-2", "edge-10", "envoy"]
    assert Replicas.of_names(names) == Replicas(edge=10, planner=3)
    # A partial stack (`--only`) still knows its defaults; unrelated names are ignored.
    assert Replicas.of_names(["valkey", "temporal", "chroma"]) == Replicas()
