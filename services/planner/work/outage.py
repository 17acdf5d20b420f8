"""How an activity answers its own failure: an outage is waited out, anything else is not.

A failure that means "a dependency is unavailable" (the inference service or its backend,
the event log, the vector store, the chat store) is retried with capped exponential backoff
for as long as the outage horizon allows, counted from the activity's first attempt; past
it the job fails with the real cause as its reason (e.g. EVENT_LOG_UNAVAILABLE), with
ErrorInfo metadata `attempts`, `outage_seconds` and `horizon_seconds`. Any other retryable
failure keeps a small attempt budget. The activity decides, through `next_retry_delay` and
`non_retryable`, so the workflows' retry policies only say "retry" (unlimited attempts) and
their commands stay as recorded.

An attempt that starts after the horizon, when the attempts before it timed out (a worker
that died, a completion lost while Temporal was down), gives up at once with
OUTAGE_HORIZON_EXCEEDED: the activity does not know their cause.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from temporalio import activity
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from switchboard.common.errors import SwitchboardError

from ..shared import errors
from ..shared.config import RetrySchedule

OUTAGE_REASONS = errors.OUTAGE_REASONS
HORIZON_EXCEEDED = errors.OUTAGE_HORIZON_EXCEEDED
# Failures that a retry cannot fix: the job fails at once.
_FINAL_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


def application_error(error: SwitchboardError) -> ApplicationError:
    """An activity failure carrying the stable reason (type), the gRPC code (first detail)
    and the ErrorInfo metadata (second detail, when there is any)."""
    details: tuple[object, ...] = (error.code.name,)
    if error.metadata:
        details += (dict(error.metadata),)
    return ApplicationError(
        error.message, *details, type=error.reason, non_retryable=error.code in _FINAL_CODES
    )


def is_outage(error: ApplicationError) -> bool:
    code = error.details[0] if error.details else ""
    return error.type in OUTAGE_REASONS or code == grpc.StatusCode.UNAVAILABLE.name


def decide(
    error: ApplicationError, schedule: RetrySchedule, attempt: int, elapsed_s: float
) -> ApplicationError:
    """The failure this attempt reports: retried after the schedule's delay, or final."""
    if error.non_retryable:
        return error
    code = str(error.details[0]) if error.details else grpc.StatusCode.INTERNAL.name
    metadata = _metadata(error)
    if is_outage(error):
        final = elapsed_s >= schedule.horizon_seconds
        if final:
            metadata |= {
                "attempts": str(attempt),
                "outage_seconds": str(round(elapsed_s)),
                "horizon_seconds": str(round(schedule.horizon_seconds)),
            }
    else:
        final = attempt >= schedule.max_attempts
    details: tuple[object, ...] = (code, metadata) if metadata else (code,)
    return ApplicationError(
        error.message,
        *details,
        type=error.type,
        non_retryable=final,
        next_retry_delay=None if final else schedule.delay(attempt),
    )


def elapsed() -> float:
    """Seconds since the running activity's first attempt was scheduled."""
    first = activity.info().scheduled_time
    if first.tzinfo is None:
        first = first.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - first).total_seconds())


def failed(error: ApplicationError, schedule: RetrySchedule) -> ApplicationError:
    """`decide` for the running activity's attempt."""
    return decide(error, schedule, activity.info().attempt, elapsed())


def check_horizon(schedule: RetrySchedule) -> None:
    """Gives up at the start of a retry that begins past the horizon (see the module doc)."""
    attempt, waited = activity.info().attempt, elapsed()
    if attempt > 1 and waited >= schedule.horizon_seconds:
        metadata = {
            "attempts": str(attempt - 1),
            "outage_seconds": str(round(waited)),
            "horizon_seconds": str(round(schedule.horizon_seconds)),
        }
        raise ApplicationError(
            "the activity's attempts did not finish within the outage horizon",
            grpc.StatusCode.UNAVAILABLE.name,
            metadata,
            type=HORIZON_EXCEEDED,
            non_retryable=True,
        )


def _metadata(error: ApplicationError) -> dict[str, str]:
    extra = error.details[1] if len(error.details) > 1 else None
    if isinstance(extra, dict):
        return {str(k): str(v) for k, v in extra.items()}
    return {}


class OutageInterceptor(Interceptor):
    """Applies the schedule to every activity of the worker: a failure the activity left
    undecided (retryable, no delay of its own) gets the schedule's delay or becomes final,
    and an unexpected exception becomes INTERNAL with the small attempt budget (the
    workflows' policies would retry it for good). `exempt` activities keep their own
    schedule and never give up at their start (webhook delivery, the job's events)."""

    def __init__(self, schedule: RetrySchedule, exempt: frozenset[str] = frozenset()) -> None:
        self.schedule = schedule
        self.exempt = exempt

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, outer: OutageInterceptor) -> None:
        super().__init__(next)
        self._outer = outer

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        schedule = self._outer.schedule
        exempt = activity.info().activity_type in self._outer.exempt
        if not exempt:
            check_horizon(schedule)
        try:
            return await self.next.execute_activity(input)
        except ApplicationError as e:
            if exempt or e.non_retryable or e.next_retry_delay is not None:
                raise
            raise failed(e, schedule) from e
        except SwitchboardError as e:
            raise failed(application_error(e), schedule) from e
        except FailureError:
            raise
        except Exception as e:  # a bug must not be retried for good
            if exempt:
                raise
            error = ApplicationError(
                "the activity failed unexpectedly",
                grpc.StatusCode.INTERNAL.name,
                {"exception": type(e).__name__},
                type=errors.INTERNAL,
            )
            raise failed(error, schedule) from e
