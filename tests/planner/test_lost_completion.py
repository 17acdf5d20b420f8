"""A generation whose activity finished while Temporal was down is not generated again,
proven against the real Temporal server (the dev server on its SQLite file, SIGKILLed and
started again on the same port and file, as the supervisor does).

How the completion is lost, for certain: Temporal dies in the middle of a generation; the
worker (a real `python -m switchboard.planner.work.worker` process) goes on generating, records
the result in Valkey (`records.record_key`) and returns. The SDK's core then sends the
completion (RespondActivityTaskCompleted) with the client's retry policy, at most 10 s and
10 retries (`temporalio.service.RetryConfig`), and on failure logs "Network error while
completing activity" and drops it (sdk-core `worker/activities.rs`, `complete`). The test
keeps Temporal down until that line is in the worker's log. Started again, Temporal finds
attempt 1's heartbeat timeout (10 s) passed, fails the attempt and schedules attempt 2:
the retry path, with no timeout shortened for the test.

What it proves: attempt 2 (the history says which attempt completed) returns the recorded
generation without calling inference, so the job SUCCEEDS with the recorded text, the log
holds each token index once and no "retrying" event, exactly one terminal event, and the
inference stand-in saw one Generate for the job.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.jobref import JobRef
from switchboard.common.jobstates import TERMINAL_STATE_NAMES as TERMINAL_STATES
from switchboard.planner import process
from switchboard.planner.shared.tasks import GENERATE
from switchboard.planner.work import records

from . import restartable
from .conftest import Infra
from .processes import Process, start_worker
from .support import eventually, running_planner, serving, states
from .test_durability import PACED, PacedInference
from .test_reconnect import until_succeeded

WORDS = 40  # 4 s of tokens: Temporal dies after the first few
KILL_AFTER_TOKENS = 5
# The core's completion retries end after 10 s; its warning comes within this.
COMPLETION_DROPPED_S = 30.0
COMPLETION_DROPPED = "Network error while completing activity"
Job = jobs_pb2.Job


@pytest.mark.asyncio
@pytest.mark.timeout(150)
async def test_a_completion_lost_in_a_temporal_outage_is_not_generated_again(
    infra: Infra, valkey_client: Valkey, tmp_path: Path
) -> None:
    temporal = restartable.temporal(tmp_path)
    await temporal.start()
    worker: Process | None = None
    fake = PacedInference()
    queue = f"test-{uuid.uuid4().hex}"
    prompt = " ".join(f"w{i}" for i in range(WORDS))
    try:
        client = await process.connect_temporal(temporal.address, "default", wait_seconds=30)
        async with (
            serving(fake) as address,
            running_planner(client, valkey_client, fake, queue) as planner,
        ):
            log = tmp_path / "worker.log"
            worker = await start_worker(temporal.address, infra.valkey, address, queue, log)
            job = await planner.create(model=PACED, prompt=prompt)
            ref = JobRef.from_name(planner.client_id, job.name)
            job_id, wid = ref.id, ref.workflow_id

            async def some_tokens() -> bool:
                stored = await planner.stored(job.name)
                return sum(e.HasField("token") for e in stored) >= KILL_AFTER_TOKENS

            await eventually(some_tokens)
            temporal.kill()

            # The activity finished: its result is recorded, its completion goes nowhere.
            async def recorded() -> bool:
                return bool(await valkey_client.exists(records.record_key(ref, "")))

            await eventually(recorded)
            await _until_logged(worker, COMPLETION_DROPPED, within_s=COMPLETION_DROPPED_S)
            await temporal.start()  # same port, same SQLite file

            await until_succeeded(planner, job.name, within_s=90)
            stored = await planner.stored(job.name)
            done = await planner.get(job.name)
            completed_by = await _completed_attempts(client, wid)
            assert worker.popen.poll() is None  # the same worker process ran attempt 2
    finally:
        if worker is not None:
            worker.stop()
        temporal.stop()

    assert completed_by == [2]  # attempt 1's completion was lost; attempt 2 completed
    assert done.state == Job.SUCCEEDED, done.error
    assert done.result.generate.text == prompt
    assert [e.token.index for e in stored if e.HasField("token")] == list(range(WORDS))
    assert not [e for e in stored if e.HasField("progress")]  # no "retrying" event
    assert [s for s in states(stored) if s in TERMINAL_STATES] == ["SUCCEEDED"]
    assert [s.request_id for s in fake.starts] == [job_id]  # one Generate, no second run


async def _until_logged(worker: Process, line: str, within_s: float) -> None:
    async def logged() -> bool:
        return line in worker.log.read_text(errors="replace")

    await eventually(logged, within_s=within_s)


async def _completed_attempts(client: Client, wid: str) -> list[int]:
    """The attempt of each completed `generate` activity in the workflow's history (the
    server writes an activity's started event, with its attempt, when the attempt ends)."""
    history = await client.get_workflow_handle(wid).fetch_history()
    scheduled: dict[int, str] = {}
    started: dict[int, int] = {}
    attempts = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes_started = event.activity_task_started_event_attributes
            started[event.event_id] = attributes_started.attempt
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            if scheduled[completed.scheduled_event_id] == GENERATE:
                attempts.append(started[completed.started_event_id])
    return attempts
