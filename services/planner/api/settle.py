"""GetJob between a job's logged end and its workflow showing it.

The workflow stores each state change in the event log before it shows it (query, memo), so
a client that saw the terminal event (an SSE follower, the edge's `Prefer: wait`) and then
asks GetJob may find the memo a workflow task behind: the append returned, but the task that
upserts the memo is not yet completed in Temporal (a few ms alone, a few hundred under
load). GetJob must not answer that older state, and need not wait for it either where the
log says all of it.

A SUCCEEDED end is all in the log (`common.jobview`): the job is answered as its memo will
show it. A FAILED or CANCELLED job may keep what the log does not hold (a failed graph's
finished stages), so for those the memo is polled until it shows the end.
"""

from __future__ import annotations

import asyncio

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common import jobview
from switchboard.common.jobref import JobRef
from switchboard.common.jobstates import TERMINAL_STATES

from ..stores.events import EventLog
from .store import JobStore

Job = jobs_pb2.Job
# How long GetJob waits for the memo to catch up with a logged FAILED or CANCELLED end.
SETTLE_SECONDS = 2.0
SETTLE_POLL_SECONDS = 0.02
# Events read back from the end for the result: the result comes just before SUCCEEDED, but
# a `log` event kept while Valkey was down may be flushed between them.
ENDING_EVENTS = 8


async def settled(store: JobStore, events: EventLog, ref: JobRef, shown: Job, end: str) -> Job:
    """The job as it ended; `shown` is its memo, not yet terminal, and `end` the cursor of its
    logged terminal event."""
    ended = jobview.succeeded_view(shown, await events.ending(ref, end, ENDING_EVENTS))
    if ended is not None:
        return ended
    return await _polled(store, ref, shown)


async def _polled(store: JobStore, ref: JobRef, job: Job) -> Job:
    """Polls the `job` memo, not the snapshot query: the workflow upserts the memo in the
    workflow task that shows the state, and a query sent while that task runs waits for it
    (once the workflow has closed, a query even replays its history on a worker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while job.state not in TERMINAL_STATES and loop.time() < deadline:
        await asyncio.sleep(SETTLE_POLL_SECONDS)
        job = await store.find(ref)
    return job
