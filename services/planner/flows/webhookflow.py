"""The `job.completed` webhook of an ended job, workflow side (the activity is `delivery.py`).

The job has ended before this runs: whatever becomes of the delivery (or a cancel meanwhile),
its state stays. Since the `webhook-delivery-status` patch the outcome is logged as a
`webhook` event and then shown as the job's `webhook_delivery`; `notify` is the delivery as it
was before (histories recorded then replay it): a failure is only logged.
"""

from __future__ import annotations

import asyncio
from typing import cast

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import grpc

    from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
    from switchboard.common.errors import SwitchboardError

    from ..shared import errors
    from ..shared.tasks import DELIVER_WEBHOOK, MEMO_JOB

from . import failures, publishing
from .policies import WEBHOOK_RETRY, WEBHOOK_START_TO_CLOSE

# The job shows its webhook's delivery (PENDING from its end, then the outcome), and the
# outcome is logged as a `webhook` event.
WEBHOOK_DELIVERY_STATUS = "webhook-delivery-status"


async def deliver(job: jobs_pb2.Job) -> None:
    """Delivers the webhook, logs the outcome, then shows it in `job` (and its memo)."""
    handle = workflow.start_activity(
        DELIVER_WEBHOOK,
        job,
        result_type=events_pb2.WebhookDelivery,
        start_to_close_timeout=WEBHOOK_START_TO_CLOSE,
        retry_policy=WEBHOOK_RETRY,
    )
    try:
        delivery = cast(events_pb2.WebhookDelivery, await asyncio.shield(handle))
    except asyncio.CancelledError:
        handle.cancel()
        abandoned = SwitchboardError(
            "webhook delivery abandoned: the workflow was cancelled",
            reason=errors.WebhookDeliveryFailed.reason,
            code=grpc.StatusCode.CANCELLED,
        )
        delivery = failures.undelivered(abandoned.to_status())
    except ActivityError as err:  # the activity returns its outcomes: not expected
        delivery = failures.undelivered(failures.failure_status(err))
    event = events_pb2.JobEvent(job=job.name, create_time=publishing.stamp(), webhook=delivery)
    try:
        await publishing.through_cancel(publishing.append(event))
    except ActivityError:  # the log stayed away past its horizon: the job still shows it
        workflow.logger.warning("webhook outcome not logged: the event log is unavailable")
    job.webhook_delivery.CopyFrom(delivery)
    workflow.upsert_memo({MEMO_JOB: job})


async def notify(job: jobs_pb2.Job) -> None:
    """`deliver` as it was before the webhook-delivery-status patch."""
    handle = workflow.start_activity(
        DELIVER_WEBHOOK,
        job,
        start_to_close_timeout=WEBHOOK_START_TO_CLOSE,
        retry_policy=WEBHOOK_RETRY,
    )
    try:
        await asyncio.shield(handle)
    except asyncio.CancelledError:
        handle.cancel()
        workflow.logger.warning("webhook delivery abandoned: the workflow was cancelled")
    except ActivityError as err:
        cause = err.cause
        why = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        workflow.logger.warning("webhook not delivered (%s)", why)
