"""GetJob never shows an older state than the event log's end.

The store and the event log are stand-ins here (the race they stage — the terminal event
logged a few ms before the workflow's state — cannot be produced on demand with a real
workflow); the servicer's logic under test is real.
"""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.jobref import JobRef
from switchboard.common.settings import Secret
from switchboard.planner.api.servicer import JobServicer
from switchboard.planner.api.store import JobStore
from switchboard.planner.stores.chats import ChatSessions
from switchboard.planner.stores.events import EventLog

Job = jobs_pb2.Job
TOKEN = "internal-test-token"


class LaggingStore:
    """Answers RUNNING for the first `lag` reads, then SUCCEEDED; `calls` says which read
    each was (`get`: memo and snapshot query, `find`: the memo only)."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.calls: list[str] = []

    @property
    def reads(self) -> int:
        return len(self.calls)

    async def get(self, ref: JobRef) -> Job:
        return self._read("get", ref)

    async def find(self, ref: JobRef) -> Job:
        return self._read("find", ref)

    def _read(self, call: str, ref: JobRef) -> Job:
        self.calls.append(call)
        state = Job.RUNNING if self.reads <= self.lag else Job.SUCCEEDED
        return Job(name=ref.name, state=state, client=ref.client)


class Log:
    def __init__(self, terminal: str | None) -> None:
        self.terminal = terminal

    async def terminal_cursor(self, job: JobRef) -> str | None:
        return self.terminal


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
async def test_a_logged_end_waits_for_the_state_to_catch_up() -> None:
    store = LaggingStore(lag=3)
    job = await get(store, Log(terminal="1-0"))
    assert (job.state, store.reads) == (Job.SUCCEEDED, 4)
    # Catching up reads the memo: a snapshot query would wait for the workflow task that
    # shows the state (or, once the workflow closed, replay it on a worker).
    assert store.calls == ["get", "find", "find", "find"]


@pytest.mark.asyncio
async def test_a_running_job_without_a_logged_end_is_answered_at_once() -> None:
    store = LaggingStore(lag=100)
    job = await get(store, Log(terminal=None))
    assert (job.state, store.reads) == (Job.RUNNING, 1)
