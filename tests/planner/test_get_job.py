"""GetJob never shows an older state than the event log's end, and answers a logged
SUCCEEDED from the log without waiting for the workflow to show it.

The store and the event log are stand-ins in the first tests (the race they stage — the
terminal event logged before the workflow's state — cannot be produced on demand with a
real workflow); the servicer's logic under test is real. The last test checks, on a real
job, that the view built from the log is the one the workflow then shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import grpc
import pytest
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, pipelines_pb2
from switchboard.common import jobview
from switchboard.common.jobref import JobRef
from switchboard.common.settings import Secret
from switchboard.planner.api import settle
from switchboard.planner.api.servicer import JobServicer
from switchboard.planner.api.store import JobStore
from switchboard.planner.stores.chats import ChatSessions
from switchboard.planner.stores.events import EventLog

from .support import Planner

Job = jobs_pb2.Job
TOKEN = "internal-test-token"
WEBHOOK = "https://hooks.example/job"


class LaggingStore:
    """Answers RUNNING for the first `lag` reads, then SUCCEEDED; `calls` says which read
    each was (`find`: the memo, `live`: the snapshot query given the memo)."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.calls: list[str] = []

    @property
    def reads(self) -> int:
        return len(self.calls)

    async def live(self, ref: JobRef, job: Job) -> Job:
        return self._read("live", ref)

    async def find(self, ref: JobRef) -> Job:
        return self._read("find", ref)

    def _read(self, call: str, ref: JobRef) -> Job:
        self.calls.append(call)
        state = Job.RUNNING if self.reads <= self.lag else Job.SUCCEEDED
        job = Job(name=ref.name, state=state, client=ref.client, webhook_url=WEBHOOK)
        job.update_time.FromSeconds(1)
        return job


class Log:
    """The log's end: its terminal cursor, and the events up to it (newest first)."""

    def __init__(self, terminal: str | None, ending: Sequence[events_pb2.JobEvent] = ()) -> None:
        self.terminal = terminal
        self.events = list(ending)
        self.asked: list[tuple[str, int]] = []

    async def terminal_cursor(self, job: JobRef) -> str | None:
        return self.terminal

    async def ending(self, job: JobRef, end: str, count: int) -> list[events_pb2.JobEvent]:
        self.asked.append((end, count))
        return self.events[:count]


def _ended(state: str, *before: events_pb2.JobEvent) -> list[events_pb2.JobEvent]:
    end = events_pb2.JobEvent(state_changed=events_pb2.StateChanged(state=state))
    end.create_time.FromSeconds(42)
    return [end, *before]


RESULT = events_pb2.JobEvent(
    result=pipelines_pb2.JobResult(embed=pipelines_pb2.EmbedOutput(model="m"))
)


class Context:
    def invocation_metadata(self) -> list[tuple[str, str]]:
        return [("x-client-id", "acme"), ("x-switchboard-internal", TOKEN)]


async def get(store: LaggingStore, log: Log) -> Job:
    servicer = JobServicer(
        cast(JobStore, store),
        cast(EventLog, log),
        internal_tokens=[Secret(TOKEN)],
        sessions=cast(ChatSessions, object()),  # not used by GetJob
    )
    context = cast(grpc.aio.ServicerContext[Any, Any], Context())
    return await servicer.GetJob(jobs_pb2.GetJobRequest(name="jobs/job-1"), context)


@pytest.mark.asyncio
async def test_a_logged_failure_waits_for_the_memo_to_catch_up() -> None:
    store = LaggingStore(lag=3)
    log = Log(terminal="1-0", ending=_ended("FAILED"))
    job = await get(store, log)
    assert (job.state, store.reads) == (Job.SUCCEEDED, 4)
    # Catching up reads the memo: a snapshot query would wait for the workflow task that
    # shows the state (or, once the workflow closed, replay it on a worker).
    assert store.calls == ["find", "find", "find", "find"]
    assert log.asked == [("1-0", settle.ENDING_EVENTS)]


@pytest.mark.asyncio
async def test_a_logged_success_is_answered_from_the_log_at_once() -> None:
    store = LaggingStore(lag=100)
    log = Log(terminal="7-0", ending=_ended("SUCCEEDED", RESULT))

    job = await get(store, log)

    assert store.calls == ["find"]  # no poll, no query
    assert job.state == Job.SUCCEEDED
    assert job.result == RESULT.result
    assert job.update_time.seconds == 42  # the SUCCEEDED event's time
    assert job.webhook_delivery.state == events_pb2.WebhookDelivery.PENDING
    assert job.webhook_url == WEBHOOK


@pytest.mark.asyncio
async def test_a_result_behind_a_flushed_log_event_is_still_found() -> None:
    kept = events_pb2.JobEvent(log=events_pb2.Log(message="kept while Valkey was down"))
    store = LaggingStore(lag=100)
    job = await get(store, Log(terminal="7-0", ending=_ended("SUCCEEDED", kept, RESULT)))
    assert (job.state, job.result, store.reads) == (Job.SUCCEEDED, RESULT.result, 1)


@pytest.mark.asyncio
async def test_a_success_without_its_result_in_reach_waits_for_the_memo() -> None:
    store = LaggingStore(lag=2)
    job = await get(store, Log(terminal="7-0", ending=_ended("SUCCEEDED")))
    assert (job.state, store.calls) == (Job.SUCCEEDED, ["find", "find", "find"])


@pytest.mark.asyncio
async def test_a_running_job_without_a_logged_end_answers_the_live_state() -> None:
    store = LaggingStore(lag=100)
    job = await get(store, Log(terminal=None))
    assert (job.state, store.calls) == (Job.RUNNING, ["find", "live"])


@pytest.mark.asyncio
async def test_the_view_from_the_log_is_the_one_the_workflow_shows(
    planner: Planner, valkey_client: Valkey
) -> None:
    embed = pipelines_pb2.EmbedInput(model="echo-embed", texts=["one", "two words"])
    request = jobs_pb2.CreateJobRequest(
        job=Job(pipeline="embed", input=pipelines_pb2.JobInput(embed=embed), labels={"a": "b"})
    )
    created = await planner.stub.CreateJob(request, metadata=planner.md())
    await planner.watch(created.name)
    shown = await planner.get(created.name)  # the workflow's own view, once it shows the end
    ref = JobRef.from_name(planner.client_id, created.name)
    log = EventLog(valkey_client)
    end = await log.terminal_cursor(ref)
    assert end is not None

    running = Job()
    running.CopyFrom(shown)
    running.state = Job.RUNNING
    running.ClearField("result")
    running.ClearField("update_time")
    built = jobview.succeeded_view(running, await log.ending(ref, end, settle.ENDING_EVENTS))

    assert shown.state == Job.SUCCEEDED
    assert built == shown
