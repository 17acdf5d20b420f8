"""JobWorkflow's activity timeouts and retry policies.

Changing a policy's numbers leaves the workflow's commands as recorded (histories replay);
the non-retryable reasons come from `shared.errors`, spelled through the ErrorReason enum.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from ..shared import errors

from . import documentflow

GENERATE_START_TO_CLOSE = timedelta(minutes=30)
GENERATE_HEARTBEAT = documentflow.HEARTBEAT
# Unlimited here: the worker's activity decides each retry's delay and its last attempt (an
# outage is waited out up to the worker's horizon, other failures get a few attempts; see
# `outage.py`). Changing a policy's numbers leaves the workflow's commands as recorded.
GENERATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=15),
    maximum_attempts=0,
    non_retryable_error_types=errors.NOT_RETRYABLE_GENERATION,
)
# One Embed call: short, and safe to repeat (the inference service retries it too).
EMBED_START_TO_CLOSE = timedelta(minutes=2)
EMBED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=15),
    maximum_attempts=0,
    non_retryable_error_types=GENERATE_RETRY.non_retryable_error_types,
)
EMBED_LOCAL_RETRY_THRESHOLD = timedelta(minutes=1)
PUBLISH_START_TO_CLOSE = timedelta(seconds=10)
# Unlimited attempts: a job must not end without its terminal event, so an outage of the
# event log delays the job's end instead of losing the event.
PUBLISH_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=0)
# As a local activity (`publishing.py`) the appends' retries wait in the worker; a wait longer
# than this would be a workflow timer instead. The SDK's default, named: with PUBLISH_RETRY's
# waits (at most 50 s; the worker asks for 15 s at most) an outage never comes to that.
PUBLISH_LOCAL_RETRY_THRESHOLD = timedelta(minutes=1)

# The worker's activity sets each retry's delay and the last attempt (its settings are the
# delivery schedule); this policy only backs it where an attempt timed out instead.
WEBHOOK_START_TO_CLOSE = timedelta(minutes=2)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,
    non_retryable_error_types=errors.NOT_RETRYABLE_WEBHOOK,
)
