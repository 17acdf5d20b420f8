"""The `local-events` patch: a job's own events (state changes, the result) are appended by a
local activity within the workflow task that decides them, so a short job costs two workflow
tasks, not five, and nothing of what the event log promises changes: each state once, stored
before it shows, and an event-log outage delays the job instead of failing it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.common.jobref import JobRef
from switchboard.planner import process
from switchboard.planner.shared.tasks import PUBLISH_EVENT
from switchboard.planner.stores import events
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.activities import Activities

from . import restartable
from .fake_inference import FakeInference
from .support import Planner, eventually, running_planner, running_worker, serving, states

if TYPE_CHECKING:  # the async stub type exists only in the generated stubs
    InferenceStub = inference_pb2_grpc.InferenceServiceAsyncStub

Job = jobs_pb2.Job
OUTAGE_S = 3.0


def _embed_request() -> jobs_pb2.CreateJobRequest:
    embed = pipelines_pb2.EmbedInput(model="echo-embed", texts=["one text", "and another"])
    job = Job(pipeline="embed", input=pipelines_pb2.JobInput(embed=embed))
    return jobs_pb2.CreateJobRequest(job=job)


async def _history(client: Client, planner: Planner, name: str) -> list[HistoryEvent]:
    """The workflow's history once it has closed (its terminal event is logged just before
    its last workflow task completes)."""
    handle = client.get_workflow_handle(JobRef.from_name(planner.client_id, name).workflow_id)
    await asyncio.wait_for(handle.result(), 30)
    return list((await handle.fetch_history()).events)


def _count(history: list[HistoryEvent], kind: EventType.ValueType) -> int:
    return sum(event.event_type == kind for event in history)


def _local_activities(history: list[HistoryEvent]) -> int:
    """The local activities' markers (patches are markers too, of another name)."""
    return sum(
        e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        for e in history
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    )


def _scheduled(history: list[HistoryEvent]) -> list[str]:
    """The (normal) activities the workflow scheduled, by type."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


@pytest.mark.asyncio
async def test_an_embed_job_takes_one_workflow_task(
    planner: Planner, temporal_client: Client
) -> None:
    job = await planner.stub.CreateJob(_embed_request(), metadata=planner.md())

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert [e.WhichOneof("payload") for e in seen[-2:]] == ["result", "state_changed"]
    history = await _history(temporal_client, planner, job.name)
    # The start runs it all (the `local-embed` patch): RUNNING logged, the embed, the result
    # and SUCCEEDED logged, the workflow completed.
    assert _count(history, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1
    assert _scheduled(history) == []
    # RUNNING, embed, result, SUCCEEDED: each a local activity's marker.
    assert _local_activities(history) == 4
    done = await planner.get(job.name)
    assert [list(e.values) for e in done.result.embed.embeddings] == [[8, 2], [11, 2]]


@pytest.mark.asyncio
async def test_an_embed_outage_is_waited_out_within_the_job(
    planner: Planner, inference: tuple[FakeInference, str], temporal_client: Client
) -> None:
    """The local embed's failure is answered by the outage schedule as an activity's was: the
    call is tried again after the schedule's delay, and the job ends SUCCEEDED once."""
    fake, _ = inference
    request = _embed_request()
    request.job.input.embed.model = "flaky-embed"
    request.job.input.embed.texts[:] = [f"flaky {uuid.uuid4().hex}"]

    job = await planner.stub.CreateJob(request, metadata=planner.md())
    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert fake.embeds.count("flaky-embed") >= 2
    history = await _history(temporal_client, planner, job.name)
    assert _scheduled(history) == []
    done = await planner.get(job.name)
    assert len(done.result.embed.embeddings) == 1


@pytest.mark.asyncio
async def test_an_embed_of_an_unknown_model_fails_the_job_at_once(
    planner: Planner, inference: tuple[FakeInference, str]
) -> None:
    fake, _ = inference
    request = _embed_request()
    request.job.input.embed.model = "no-such-embedder"
    before = fake.embeds.count("no-such-embedder")

    job = await planner.stub.CreateJob(request, metadata=planner.md())
    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "FAILED"]
    assert fake.embeds.count("no-such-embedder") - before == 1  # NOT_FOUND: not retried
    done = await planner.get(job.name)
    assert done.error.code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.mark.asyncio
async def test_a_generate_job_logs_its_states_without_activities_of_their_own(
    planner: Planner, temporal_client: Client
) -> None:
    job = await planner.create(prompt="tokens come from the activity")

    seen = await planner.watch(job.name)

    assert states(seen) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    history = await _history(temporal_client, planner, job.name)
    assert _scheduled(history) == ["generate"]
    assert PUBLISH_EVENT not in _scheduled(history)
    assert _count(history, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 2


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_an_event_log_outage_as_the_job_starts_delays_it_and_logs_each_state_once(
    own_valkey: restartable.Restartable, temporal_client: Client
) -> None:
    """Valkey is down when the worker picks the job up: the local activity that logs
    RUNNING retries in the worker until Valkey is back; the job then runs to its end."""
    client = process.valkey_client(f"valkey://{own_valkey.address}/0")
    fake = FakeInference()
    queue = f"test-{uuid.uuid4().hex}"
    try:
        async with (
            serving(fake) as address,
            running_planner(temporal_client, client, fake, queue) as planner,
        ):
            job = await planner.create(prompt="after the outage")  # QUEUED is logged
            own_valkey.kill()
            async with running_worker(temporal_client, client, address, queue):
                wid = JobRef.from_name(planner.client_id, job.name).workflow_id
                handle = temporal_client.get_workflow_handle(wid)

                async def publish_failed() -> bool:
                    history = (await handle.fetch_history()).events
                    return _count(list(history), EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED) > 0

                await eventually(publish_failed)
                await asyncio.sleep(OUTAGE_S)
                assert fake.starts == []  # nothing runs before RUNNING is logged
                await own_valkey.start()  # same port, same append-only file
                await asyncio.wait_for(handle.result(), 60)
            stored = await planner.stored(job.name)
            done = await planner.get(job.name)
            history = await _history(temporal_client, planner, job.name)
    finally:
        await client.aclose()

    assert done.state == Job.SUCCEEDED, done.error
    assert done.result.generate.text == "after the outage"
    assert states(stored) == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert sum(e.HasField("result") for e in stored) == 1
    assert _scheduled(history) == ["generate"]
    assert len(fake.starts) == 1


def _publish_info(wid: str, activity_id: str, *, is_local: bool = True) -> activity.Info:
    info = ActivityEnvironment().info
    return dataclasses.replace(
        info, workflow_id=wid, workflow_run_id="run-1", activity_id=activity_id, is_local=is_local
    )


@pytest.mark.asyncio
async def test_a_publish_that_runs_again_appends_its_event_once(valkey_client: Valkey) -> None:
    """A local activity whose workflow task did not complete runs again: its `result` (any
    event but a state change) must not be logged twice; another publish still is."""
    ref = JobRef("client-a", f"j-{uuid.uuid4().hex[:12]}")
    log = EventLog(valkey_client)
    activities = Activities(cast("InferenceStub", None), log)
    result = events_pb2.JobEvent(job=ref.name, result=pipelines_pb2.JobResult())
    progress = events_pb2.JobEvent(job=ref.name, progress=events_pb2.Progress(stage="a"))

    async def publish(event: events_pb2.JobEvent, activity_id: str, is_local: bool) -> str:
        env = ActivityEnvironment()
        env.info = _publish_info(ref.workflow_id, activity_id, is_local=is_local)
        return cast(str, await env.run(activities.publish_event, event))

    first = await publish(result, "3", True)
    again = await publish(result, "3", True)
    other = await publish(progress, "4", True)
    # A normal activity of the same number (a run that changed over at the patch) is another.
    remote = await publish(progress, "3", False)

    assert again == first
    stored = [e for _, e in await valkey_client.xrange(events.stream_key(ref))]
    assert len(stored) == 3
    assert len({first, other, remote}) == 3
