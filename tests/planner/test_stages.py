"""Fan-outs and inline stage graphs through the real planner, worker, Temporal and Valkey
(the fake inference service: `echo`, `slow`, `fail` models)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.common.errors import SwitchboardError

from .support import WAIT_S, Planner, reason, states, tokens

Job = jobs_pb2.Job
Status = pipelines_pb2.StageResult.Status
Event = events_pb2.JobEvent
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", "TIMED_OUT"}


def branch(branch_id: str, model: str = "echo", prompt: str = "") -> pipelines_pb2.FanOutBranch:
    return pipelines_pb2.FanOutBranch(
        id=branch_id, model=model, prompt=prompt or f"{branch_id} says hello"
    )


def fan_out(
    *branches: pipelines_pb2.FanOutBranch, budget_s: float = 0, min_succeeded: int = 0
) -> pipelines_pb2.JobInput:
    request = pipelines_pb2.FanOutInput(branches=branches, min_succeeded=min_succeeded)
    if budget_s:
        request.branch_timeout.FromTimedelta(timedelta(seconds=budget_s))
    return pipelines_pb2.JobInput(fan_out=request)


def gen(
    stage_id: str, prompt: str, after: tuple[str, ...] = (), model: str = "echo"
) -> pipelines_pb2.Stage:
    return pipelines_pb2.Stage(
        id=stage_id, after=after, generate=pipelines_pb2.GenerateInput(model=model, prompt=prompt)
    )


def graph(*stages: pipelines_pb2.Stage, allow_partial: bool = False) -> pipelines_pb2.JobInput:
    return pipelines_pb2.JobInput(
        graph=pipelines_pb2.StageGraph(stages=stages, allow_partial=allow_partial)
    )


async def create(planner: Planner, job_input: pipelines_pb2.JobInput) -> Job:
    kind = job_input.WhichOneof("kind") or ""
    job = Job(pipeline=kind.replace("_", "-"), input=job_input)
    request = jobs_pb2.CreateJobRequest(job=job)
    return await planner.stub.CreateJob(request, metadata=planner.md())


def stage_events(seen: list[Event], stage: str) -> list[str]:
    """The statuses a stage's Progress events announced, in log order."""
    return [
        Status.Name(e.progress.status)
        for e in seen
        if e.HasField("progress") and e.progress.stage == stage
    ]


def stage_tokens(seen: list[Event], stage: str) -> str:
    return "".join(e.token.text for e in seen if e.HasField("token") and e.token.stage == stage)


def position(seen: list[Event], stage: str, status: str) -> int:
    """Where in the log a stage announced a status."""
    return next(
        i
        for i, e in enumerate(seen)
        if e.HasField("progress")
        and e.progress.stage == stage
        and Status.Name(e.progress.status) == status
    )


def results(output: pipelines_pb2.StagesOutput) -> list[tuple[str, str]]:
    return [(r.id, Status.Name(r.status)) for r in output.stages]


@pytest.mark.asyncio
async def test_fan_out_with_a_failing_branch_succeeds_with_a_partial_result(
    planner: Planner,
) -> None:
    job = await create(
        planner, fan_out(branch("a", prompt="alpha beta"), branch("b", "fail"), branch("c"))
    )

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    output = (await planner.result(job.name)).fan_out
    assert results(output) == [("a", "SUCCEEDED"), ("b", "FAILED"), ("c", "SUCCEEDED")]
    assert (output.succeeded, output.total, output.summary) == (2, 3, "2 of 3 succeeded")
    assert output.stages[0].generate.text == "alpha beta"
    assert SwitchboardError.from_status(output.stages[1].error).reason == "FAKE_MODEL_FAILED"
    for stage_id, final in (("a", "SUCCEEDED"), ("b", "FAILED"), ("c", "SUCCEEDED")):
        assert stage_events(seen, stage_id) == ["RUNNING", final]
    assert stage_tokens(seen, "a") == "alpha beta"
    assert stage_tokens(seen, "c") == "c says hello"
    assert stage_tokens(seen, "b") == "" and "" not in {e.token.stage for e in seen if e.token.text}
    job_progress = [e.progress for e in seen if e.HasField("progress") and not e.progress.stage]
    assert [p.message for p in job_progress] == [f"{k} of 3 stages done" for k in (1, 2, 3)]
    assert job_progress[-1].fraction == 1.0
    # Why the branch failed reaches its followers, once per attempt, the last one an error.
    logs = [e.log for e in seen if e.HasField("log")]
    assert logs and {line.stage for line in logs} == {"b"}
    assert all("FAKE_MODEL_FAILED" in line.message for line in logs)
    assert logs[-1].level == events_pb2.Log.ERROR


@pytest.mark.asyncio
async def test_fan_out_branch_past_its_budget_is_timed_out_and_stopped(planner: Planner) -> None:
    job = await create(planner, fan_out(branch("quick"), branch("late", "slow"), budget_s=1.5))
    job_id = job.name.removeprefix("jobs/")

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    output = (await planner.result(job.name)).fan_out
    assert results(output) == [("quick", "SUCCEEDED"), ("late", "TIMED_OUT")]
    error = SwitchboardError.from_status(output.stages[1].error)
    assert (error.reason, error.code) == ("GENERATION_TIMED_OUT", grpc.StatusCode.DEADLINE_EXCEEDED)
    assert output.summary == "1 of 2 succeeded"
    assert f"{job_id}.late" in planner.fake.cancels  # stopped at the backend
    timed_out = position(seen, "late", "TIMED_OUT")
    assert stage_tokens(seen[:timed_out], "late")  # it did stream before its budget ran out
    assert stage_tokens(seen[timed_out:], "late") == ""  # and nothing after


@pytest.mark.asyncio
async def test_fan_out_below_min_succeeded_fails_with_too_few_succeeded(planner: Planner) -> None:
    branches = (branch("a"), branch("b", "fail"), branch("c", "fail"))
    job = await create(planner, fan_out(*branches, min_succeeded=2))

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "FAILED"]
    failed = await planner.get(job.name)
    error = SwitchboardError.from_status(failed.error)
    assert error.reason == "TOO_FEW_SUCCEEDED"
    assert error.message == "1 of 3 succeeded; at least 2 must"
    assert error.metadata == {"succeeded": "1", "total": "3", "min_succeeded": "2"}
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION  # the failed branches' code
    assert results(failed.result.fan_out) == [
        ("a", "SUCCEEDED"),
        ("b", "FAILED"),
        ("c", "FAILED"),
    ]
    assert not any(e.HasField("result") for e in seen)  # a result event only for SUCCEEDED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await planner.result(job.name)
    assert reason(caught.value) == "JOB_FAILED"


@pytest.mark.asyncio
async def test_graph_quotes_earlier_text_and_runs_independent_stages_in_parallel(
    planner: Planner,
) -> None:
    embed = pipelines_pb2.Stage(
        id="vec", after=["a"], embed=pipelines_pb2.EmbedInput(model="echo-embed", texts=["x y"])
    )
    job_input = graph(
        gen("a", "alpha one"),
        gen("b", "beta two"),
        embed,
        gen("c", "{{a}} and {{b}} and {literal}", after=("a", "b", "vec")),
    )
    job = await create(planner, job_input)

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    started = {s.request_id.rsplit(".", 1)[-1]: s.prompt for s in planner.fake.starts}
    assert started["c"] == "alpha one and beta two and {literal}"
    # Both independent stages were running before either ended: not one after the other.
    assert max(position(seen, s, "RUNNING") for s in "ab") < min(
        position(seen, s, "SUCCEEDED") for s in "ab"
    )
    assert position(seen, "c", "RUNNING") > max(position(seen, s, "SUCCEEDED") for s in "ab")
    assert position(seen, "vec", "RUNNING") > position(seen, "a", "SUCCEEDED")
    output = (await planner.result(job.name)).graph
    assert results(output) == [(s, "SUCCEEDED") for s in ("a", "b", "vec", "c")]
    assert output.stages[3].generate.text == "alpha one and beta two and {literal}"
    assert [list(v.values) for v in output.stages[2].embed.embeddings] == [[3, 2]]


@pytest.mark.asyncio
async def test_graph_fails_on_its_first_failed_stage_and_stops_the_others(
    planner: Planner,
) -> None:
    job_input = graph(
        gen("broken", "x", model="fail"),
        gen("long", "x", model="slow"),
        gen("after", "{{broken}}", after=("broken",)),
    )
    job = await create(planner, job_input)
    job_id = job.name.removeprefix("jobs/")

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "FAILED"]  # never CANCELLING
    failed = await planner.get(job.name)
    error = SwitchboardError.from_status(failed.error)
    assert (error.reason, error.code) == ("STAGE_FAILED", grpc.StatusCode.FAILED_PRECONDITION)
    assert error.metadata == {
        "stage": "broken",
        "stage_status": "FAILED",
        "stage_reason": "FAKE_MODEL_FAILED",
    }
    assert error.message == "stage 'broken' failed: the fake model failed"
    assert results(failed.result.graph) == [
        ("broken", "FAILED"),
        ("long", "CANCELLED"),
        ("after", "SKIPPED"),
    ]
    assert f"{job_id}.long" in planner.fake.cancels
    assert stage_events(seen, "long") == ["RUNNING", "CANCELLED"]
    assert stage_events(seen, "after") == ["SKIPPED"]
    assert seen[-1].state_changed.state == "FAILED"


@pytest.mark.asyncio
async def test_graph_with_allow_partial_skips_the_dependants_of_a_failed_stage(
    planner: Planner,
) -> None:
    job_input = graph(
        gen("d", "{{b}}", after=("b",)),  # listed before what it runs after
        gen("a", "x", model="fail"),
        gen("b", "{{a}}", after=("a",)),
        gen("c", "independent"),
        allow_partial=True,
    )
    job = await create(planner, job_input)

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    output = (await planner.result(job.name)).graph
    assert results(output) == [
        ("d", "SKIPPED"),
        ("a", "FAILED"),
        ("b", "SKIPPED"),
        ("c", "SUCCEEDED"),
    ]
    assert output.summary == "1 of 4 succeeded"
    assert {s.request_id.rsplit(".", 1)[-1] for s in planner.fake.starts} == {"a", "c"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("job_input", "problem"),
    [
        (graph(gen("a", "x", after=("b",)), gen("b", "y", after=("a",))), "cycle: a -> b -> a"),
        (graph(gen("a", "x"), gen("b", "{{a}}")), "does not run after 'a'"),
        (graph(gen("a", "x", after=("zzz",))), "unknown stage 'zzz'"),
        (fan_out(branch("a"), branch("a")), "'a' is used twice"),
    ],
    ids=["cycle", "quote", "unknown", "fan-out-ids"],
)
async def test_an_invalid_graph_is_refused_at_create_before_any_workflow(
    planner: Planner, job_input: pipelines_pb2.JobInput, problem: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(planner, job_input)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(caught.value) == "INVALID_STAGE_GRAPH"
    assert problem in (caught.value.details() or "")
    listed = await planner.stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=planner.md())
    assert list(listed.jobs) == [] and planner.fake.starts == []


@pytest.mark.asyncio
async def test_cancel_during_a_fan_out_stops_every_branch_and_ends_cancelled_once(
    planner: Planner,
) -> None:
    ids = ("x", "y", "z")
    job = await create(planner, fan_out(*(branch(i, "slow") for i in ids), budget_s=60))
    job_id = job.name.removeprefix("jobs/")
    request = jobs_pb2.WatchJobRequest(name=job.name)
    seen: list[Event] = []
    asked = False
    async with asyncio.timeout(WAIT_S):
        async for event in planner.stub.WatchJob(request, metadata=planner.md()):
            seen.append(event)
            if not asked and all(stage_tokens(seen, i) for i in ids):
                asked = True
                assert (await planner.cancel(job.name)).state == Job.CANCELLING

    assert states(seen) == ["QUEUED", "RUNNING", "CANCELLING", "CANCELLED"]
    assert sorted(planner.fake.cancels) == [f"{job_id}.{i}" for i in ids]
    stored = await planner.stored(job.name)
    terminal = [e for e in stored if e.state_changed.state in {"SUCCEEDED", "FAILED", "CANCELLED"}]
    assert len(terminal) == 1 and stored[-1] == terminal[0]
    assert states(stored).count("CANCELLING") == 1
    for i in ids:
        assert stage_events(stored, i) == ["RUNNING", "CANCELLED"]
        assert stage_tokens(stored[position(stored, i, "CANCELLED") :], i) == ""
    assert tokens(stored)  # the branches had streamed
    assert (await planner.get(job.name)).state == Job.CANCELLED
