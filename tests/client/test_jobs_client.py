"""The client against the real planner: a whole job, typed errors, and a watch that outlives
a planner restart without losing or repeating an event."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.api.rpc.v1 import error_reason_pb2
from switchboard.client import FailedPrecondition, JobsClient, NotFound, Unauthenticated
from switchboard.common.jobref import JobRef

from .conftest import PlannerServer

Reason = error_reason_pb2.ErrorReason
WAIT_S = 30.0


def generate(model: str, prompt: str) -> jobs_pb2.Job:
    given = pipelines_pb2.GenerateInput(model=model, prompt=prompt)
    return jobs_pb2.Job(pipeline="generate", input=pipelines_pb2.JobInput(generate=given))


def texts(seen: list[events_pb2.JobEvent]) -> list[str]:
    return [e.token.text for e in seen if e.HasField("token")]


@pytest.mark.asyncio
async def test_a_job_from_create_to_result(client: JobsClient) -> None:
    job = await client.create(generate("echo", "the quick brown fox"), job_id="fox-1")
    assert job.name == "jobs/fox-1"
    async with asyncio.timeout(WAIT_S):
        seen = [event async for event in client.watch(job)]
        ended = await client.get(JobRef(client.client_id, "fox-1"))
    assert "".join(texts(seen)) == "the quick brown fox"
    assert seen[-1].state_changed.state == "SUCCEEDED"
    assert jobs_pb2.Job.State.Name(ended.state) == "SUCCEEDED"
    result = await client.result("fox-1")
    assert result.generate.text.split() == ["the", "quick", "brown", "fox"]
    listed = [j.name async for j in client.jobs(page_size=1)]
    assert listed == ["jobs/fox-1"]
    # A watch from a cursor replays only what follows it.
    later = [e async for e in client.watch(job, after=seen[1].cursor)]
    assert [e.cursor for e in later] == [e.cursor for e in seen[2:] if e.cursor]


@pytest.mark.asyncio
async def test_errors_are_typed_with_their_reason(
    client: JobsClient, planner: PlannerServer
) -> None:
    with pytest.raises(NotFound) as missing:
        await client.get("jobs/no-such-job")
    assert missing.value.error_reason == Reason.JOB_NOT_FOUND
    job = await client.create(generate("slow", "x"))
    with pytest.raises(FailedPrecondition) as running:
        await client.result(job)
    assert running.value.error_reason == Reason.JOB_NOT_FINISHED
    cancelled = await client.cancel(job)
    assert jobs_pb2.Job.State.Name(cancelled.state) in ("CANCELLING", "CANCELLED")
    async with asyncio.timeout(WAIT_S):
        ended = await client.wait(job)
    assert jobs_pb2.Job.State.Name(ended.state) == "CANCELLED"
    async with JobsClient(planner.address, client_id="x", internal_token="wrong") as stranger:
        with pytest.raises(Unauthenticated) as refused:
            await stranger.get(job.name)
    assert refused.value.error_reason == Reason.CLIENT_ID_INVALID


@pytest.mark.asyncio
async def test_watch_resumes_across_a_planner_restart(
    client: JobsClient, planner: PlannerServer
) -> None:
    job = await client.create(generate("slow", "x"))
    seen: list[events_pb2.JobEvent] = []
    restarted = False
    async with asyncio.timeout(WAIT_S):
        async for event in client.watch(job):
            seen.append(event)
            tokens = len(texts(seen))
            if tokens == 10 and not restarted:
                restarted = True
                await planner.stop()  # the open watch breaks here
                await asyncio.sleep(0.5)  # tokens keep being logged meanwhile
                await planner.start()
            if tokens == 40 and event.HasField("token"):
                await client.cancel(job)
    assert restarted
    assert seen[-1].state_changed.state == "CANCELLED"
    stored = await planner.valkey.xrange(client.ref(job).key("events"))
    delivered = [e for e in seen if not e.HasField("heartbeat")]
    # Every stored event exactly once, in order: the cursor is the entry's id in the log.
    assert [e.cursor for e in delivered] == [entry.decode() for entry, _ in stored]
    for event, (_, fields) in zip(delivered, stored, strict=True):
        event.ClearField("cursor")
        assert event == events_pb2.JobEvent.FromString(fields[b"e"])
    words = [text.strip() for text in texts(delivered)]
    assert words == [f"w{i}" for i in range(len(words))]
