"""How JobWorkflow writes the job's event log: the `publish_event` activity, and the helpers
its state changes use (`stamp`, `through_cancel`).

Since the `local-events` patch the activity runs as a local activity: in the worker that runs
the workflow task, within that task. A job's state events then cost no workflow task of their
own (an embed job went from five workflow tasks to two), and the order is kept: the workflow
goes on (shows the state, schedules the next activity) only once the append has returned.
Local-activity retries follow PUBLISH_RETRY in the worker; a backoff longer than the local
retry threshold becomes a workflow timer, so an event-log outage delays the job as it did
with a normal activity (state changes are retried for good, other events until the outage
horizon, counted from the first attempt). Histories recorded before the patch replay with
the normal activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from google.protobuf import timestamp_pb2

    from switchboard.api.jobs.v1 import events_pb2

    from ..shared.tasks import PUBLISH_EVENT

from .policies import PUBLISH_LOCAL_RETRY_THRESHOLD, PUBLISH_RETRY, PUBLISH_START_TO_CLOSE

T = TypeVar("T")
# State and other workflow events are appended by a local activity, within the workflow task.
LOCAL_EVENTS = "local-events"


async def append(event: events_pb2.JobEvent) -> None:
    """Appends one event to the job's log (retried as PUBLISH_RETRY says)."""
    if workflow.patched(LOCAL_EVENTS):
        await workflow.execute_local_activity(
            PUBLISH_EVENT,
            event,
            start_to_close_timeout=PUBLISH_START_TO_CLOSE,
            retry_policy=PUBLISH_RETRY,
            local_retry_threshold=PUBLISH_LOCAL_RETRY_THRESHOLD,
        )
        return
    await workflow.execute_activity(
        PUBLISH_EVENT,
        event,
        start_to_close_timeout=PUBLISH_START_TO_CLOSE,
        retry_policy=PUBLISH_RETRY,
    )


def stamp() -> timestamp_pb2.Timestamp:
    """The workflow's now (deterministic: the workflow task's time) as a Timestamp."""
    now = timestamp_pb2.Timestamp()
    now.FromDatetime(workflow.now())
    return now


async def through_cancel(awaitable: Awaitable[T]) -> bool:
    """Awaits to its end whatever cancels arrive meanwhile; True when one did."""
    future = asyncio.ensure_future(awaitable)
    interrupted = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            interrupted = True
    future.result()
    return interrupted
