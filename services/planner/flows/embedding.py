"""How JobWorkflow runs an Embed call: the `embed` activity.

Since the `local-embed` patch it runs as a local activity, in the worker that runs the
workflow task and within that task, so an `embed` job is one workflow task. An Embed is short
and safe to repeat (the inference service retries it too), so it needs no heartbeat: a worker
that dies in one leaves the task to time out and run again elsewhere. Its retries follow
EMBED_RETRY, each delay set by the worker's outage interceptor and waited in the worker (a
wait over the local retry threshold would become a workflow timer). Histories recorded
before the patch replay with the normal activity.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from switchboard.api.jobs.v1 import pipelines_pb2

    from ..shared.tasks import EMBED

from . import failures
from .policies import (
    EMBED_LOCAL_RETRY_THRESHOLD,
    EMBED_RETRY,
    EMBED_START_TO_CLOSE,
    GENERATE_HEARTBEAT,
)

# An Embed call runs as a local activity, within the workflow task that asks for it.
LOCAL_EMBED = "local-embed"


async def embed(
    request: pipelines_pb2.EmbedInput, budget: timedelta | None
) -> pipelines_pb2.EmbedOutput:
    """One Embed call; `budget` bounds it, retries included. A failure is raised as an
    ActivityError either way (`failures.as_activity_error`)."""
    if not workflow.patched(LOCAL_EMBED):
        output = await workflow.execute_activity(
            EMBED,
            request,
            result_type=pipelines_pb2.EmbedOutput,
            start_to_close_timeout=EMBED_START_TO_CLOSE,
            heartbeat_timeout=GENERATE_HEARTBEAT,
            schedule_to_close_timeout=budget,
            retry_policy=EMBED_RETRY,
        )
        return cast(pipelines_pb2.EmbedOutput, output)
    try:
        output = await workflow.execute_local_activity(
            EMBED,
            request,
            result_type=pipelines_pb2.EmbedOutput,
            start_to_close_timeout=EMBED_START_TO_CLOSE,
            schedule_to_close_timeout=budget,
            retry_policy=EMBED_RETRY,
            local_retry_threshold=EMBED_LOCAL_RETRY_THRESHOLD,
        )
    except FailureError as err:
        if isinstance(err, ActivityError):
            raise
        raise failures.as_activity_error(err, EMBED) from err
    return cast(pipelines_pb2.EmbedOutput, output)
