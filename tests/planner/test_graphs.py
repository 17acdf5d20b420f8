"""Stage graphs and fan-outs are checked before anything runs; quotes fill in one pass."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from switchboard.api.jobs.v1 import pipelines_pb2
from switchboard.planner.shared import graphs
from switchboard.planner.shared.errors import InvalidStageGraph

Stage = pipelines_pb2.Stage


def gen(stage_id: str, prompt: str = "say hi", after: tuple[str, ...] = ()) -> Stage:
    return Stage(
        id=stage_id,
        after=after,
        generate=pipelines_pb2.GenerateInput(model="echo", prompt=prompt),
    )


def emb(stage_id: str, after: tuple[str, ...] = ()) -> Stage:
    return Stage(id=stage_id, after=after, embed=pipelines_pb2.EmbedInput(model="e", texts=["x"]))


def graph(*stages: Stage) -> pipelines_pb2.StageGraph:
    return pipelines_pb2.StageGraph(stages=stages)


def refused(bad: pipelines_pb2.StageGraph) -> InvalidStageGraph:
    with pytest.raises(InvalidStageGraph) as caught:
        graphs.check_graph(bad)
    error = caught.value
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_STAGE_GRAPH")
    return error


def test_a_well_formed_graph_passes() -> None:
    graphs.check_graph(
        graph(
            gen("a"),
            gen("b"),
            emb("e", after=("a",)),
            gen("c", "join {{a}} and {{b}}", after=("a", "b", "e")),
        )
    )


def test_a_repeated_stage_id_is_refused() -> None:
    error = refused(graph(gen("a"), gen("a")))
    assert "'a' is used twice" in error.message
    assert error.metadata == {"stage": "a"}


def test_an_unknown_dependency_is_refused() -> None:
    error = refused(graph(gen("a"), gen("b", after=("nope",))))
    assert "unknown stage 'nope'" in error.message and error.metadata == {"stage": "b"}


@pytest.mark.parametrize(
    ("stages", "cycle"),
    [
        ((gen("a", after=("a",)),), "a -> a"),
        ((gen("a", after=("b",)), gen("b", after=("a",))), "a -> b -> a"),
        (
            (gen("x"), gen("a", after=("c",)), gen("b", after=("a",)), gen("c", after=("b",))),
            "a -> c -> b -> a",
        ),
    ],
)
def test_a_cycle_is_refused_and_named(stages: tuple[Stage, ...], cycle: str) -> None:
    error = refused(graph(*stages))
    assert error.message.endswith(cycle)


def test_a_quote_of_a_stage_it_does_not_run_after_is_refused() -> None:
    error = refused(graph(gen("a"), gen("b", "use {{a}}")))
    assert "quotes {{a}} but does not run after 'a'" in error.message


def test_a_quote_of_an_unknown_stage_is_refused() -> None:
    refused(graph(gen("a"), gen("b", "use {{ghost}}", after=("a",))))


def test_a_quote_of_an_embed_stage_is_refused() -> None:
    error = refused(graph(emb("a"), gen("b", "use {{a}}", after=("a",))))
    assert "not a generate stage" in error.message


def test_braces_that_name_no_stage_id_are_plain_text() -> None:
    graphs.check_graph(graph(gen("a", 'json like {{ "k": 1 }} or {{Upper}}')))


def test_fill_replaces_quotes_once_and_leaves_the_rest() -> None:
    texts = {"a": "A says {{b}}", "b": "B"}
    assert graphs.quoted("{{a}} {{b}} {{a}} {{c}}") == ["a", "b", "c"]
    assert graphs.fill("{{a}} / {{b}} / {{c}}", texts) == "A says {{b}} / B / {{c}}"


def test_a_fan_out_needs_distinct_branch_ids_and_a_reachable_minimum() -> None:
    branch = pipelines_pb2.FanOutBranch(id="a", model="echo", prompt="p")
    with pytest.raises(InvalidStageGraph, match="'a' is used twice"):
        graphs.check_fan_out(pipelines_pb2.FanOutInput(branches=[branch, branch]))
    with pytest.raises(InvalidStageGraph, match="min_succeeded 2 exceeds the 1 branches"):
        graphs.check_fan_out(pipelines_pb2.FanOutInput(branches=[branch], min_succeeded=2))
    graphs.check_fan_out(pipelines_pb2.FanOutInput(branches=[branch], min_succeeded=1))


def test_a_fan_out_runs_as_independent_stages_with_the_branch_budget() -> None:
    fan_out = pipelines_pb2.FanOutInput(
        branches=[
            pipelines_pb2.FanOutBranch(id="a", model="m1", prompt="p {{x}}"),
            pipelines_pb2.FanOutBranch(id="b", model="m2", prompt="q"),
        ]
    )
    default = graphs.fan_out_graph(fan_out)
    assert default.allow_partial
    assert [(s.id, list(s.after), s.generate.model) for s in default.stages] == [
        ("a", [], "m1"),
        ("b", [], "m2"),
    ]
    assert {s.timeout.ToTimedelta() for s in default.stages} == {timedelta(seconds=10)}
    fan_out.branch_timeout.FromTimedelta(timedelta(seconds=3))
    assert graphs.fan_out_graph(fan_out).stages[0].timeout.ToTimedelta() == timedelta(seconds=3)


def test_check_input_checks_graphs_and_fan_outs_only() -> None:
    bad = pipelines_pb2.JobInput(graph=graph(gen("a"), gen("a")))
    with pytest.raises(InvalidStageGraph):
        graphs.check_input(bad)
    graphs.check_input(
        pipelines_pb2.JobInput(generate=pipelines_pb2.GenerateInput(model="m", prompt="{{a}}"))
    )
