"""`deliver_webhook`: one attempt at POSTing a job's signed `job.completed` notice.

An attempt ends one of three ways:
- delivered (2xx): returns a DELIVERED `WebhookDelivery`;
- refused for good (a forbidden destination, no signing secret, an answer a retry cannot
  change) or the last attempt failed: returns a FAILED one, with the reason as `error`;
- failed in a way another attempt may not (no answer, 5xx, 408, 429...): logs a PENDING
  `webhook` event to the job's log (best effort) and raises a retryable ApplicationError whose
  `next_retry_delay` is the schedule's, or the receiver's Retry-After when that is longer.

Final outcomes are returned, not raised, so the workflow gets every one as a value: it logs
the outcome's `webhook` event and shows it as `Job.webhook_delivery`. The worker's settings
are the delivery schedule, so tests and deployments tune it without a new workflow.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.errors import SwitchboardError
from switchboard.common.jobref import JobRef

from ..shared import errors
from ..shared.config import WebhookSettings
from ..shared.tasks import DELIVER_WEBHOOK
from ..stores.events import EventLog, job_event, now
from . import webhooks
from .activities import enter_job

log = logging.getLogger(__name__)

Delivery = events_pb2.WebhookDelivery


class Webhooks:
    """The `deliver_webhook` activity. Without an event log, attempts that will be retried
    are only logged by the worker, not in the job's log (the outcome is, by the workflow)."""

    def __init__(self, settings: WebhookSettings, events: EventLog | None = None) -> None:
        self._settings = settings
        self._events = events

    @activity.defn(name=DELIVER_WEBHOOK)
    async def deliver_webhook(self, job: jobs_pb2.Job) -> events_pb2.WebhookDelivery:
        ref = enter_job()
        attempt = activity.info().attempt
        if attempt > self._settings.max_attempts:  # retried past the schedule after timeouts
            exhausted = errors.WebhookDeliveryFailed("every attempt failed or timed out")
            return _failed(attempt - 1, 0, exhausted)
        answer: webhooks.Answer | None = None
        try:
            answer = await self._attempt(ref, job)
            error = answer.error()
        except SwitchboardError as e:
            error = e
        status = answer.status if answer else 0
        fields: dict[str, object] = {"attempt": attempt, "http_status": status}
        if error is None:
            log.info("webhook delivered", extra={"fields": fields})
            return Delivery(
                state=Delivery.DELIVERED,
                attempts=attempt,
                last_http_status=status,
                deliver_time=now(),
            )
        fields = {**fields, "reason": error.reason, **error.metadata}
        if not isinstance(error, errors.WebhookDeliveryFailed):
            log.warning("webhook refused", extra={"fields": fields})
            return _failed(attempt, status, error)
        if attempt >= self._settings.max_attempts:
            log.warning("webhook not delivered: last attempt failed", extra={"fields": fields})
            return _failed(attempt, status, error)
        delay = self._delay(attempt, answer.retry_after if answer else None)
        log.info("webhook attempt failed; retrying", extra={"fields": fields})
        await self._log_attempt(ref, _pending(attempt, status, error, delay))
        raise ApplicationError(
            f"webhook not delivered: {error.message}",
            error.code.name,
            type=error.reason,
            next_retry_delay=delay,
        )

    async def _attempt(self, ref: JobRef, job: jobs_pb2.Job) -> webhooks.Answer:
        """Checks the destination, signs and POSTs; the receiver's answer, or the error."""
        destination = await webhooks.check_destination(job.webhook_url, allow=self._settings.allow)
        secret = self._settings.secret_for(ref.client).value
        if not secret:
            raise errors.WebhookSecretMissing("no webhook secret for this client")
        body = json.dumps(webhooks.payload(job), separators=(",", ":")).encode()
        headers = webhooks.headers(
            secret, webhooks.message_id(ref.workflow_id), int(time.time()), body
        )
        try:
            # To the addresses just checked (no second DNS lookup), without following redirects.
            return await webhooks.post(
                destination, body, headers, timeout_s=self._settings.timeout_seconds
            )
        except httpx.InvalidURL as e:  # the guard read it, so this is not expected; no retry
            raise errors.WebhookDestinationForbidden("webhook_url cannot be called") from e
        except httpx.HTTPError as e:
            why = f"the request failed ({type(e).__name__})"
            raise errors.WebhookDeliveryFailed(why) from e

    def _delay(self, attempt: int, retry_after: float | None) -> timedelta:
        """The schedule's delay before the next attempt, lengthened to a Retry-After (both
        capped at the schedule's longest interval)."""
        s = self._settings
        scheduled = s.initial_interval_seconds * s.backoff ** (attempt - 1)
        wanted = max(scheduled, retry_after or 0.0)
        return timedelta(seconds=min(wanted, s.max_interval_seconds))

    async def _log_attempt(self, ref: JobRef, delivery: events_pb2.WebhookDelivery) -> None:
        """Tells the job's followers that an attempt failed and when the next is due; best
        effort: the retry does not wait for the event log."""
        if self._events is None:
            return
        try:
            await self._events.append(ref, job_event(ref, webhook=delivery))
        except SwitchboardError:
            log.warning("could not log the failed webhook attempt")


def _failed(attempt: int, status: int, error: SwitchboardError) -> events_pb2.WebhookDelivery:
    return Delivery(
        state=Delivery.FAILED, attempts=attempt, last_http_status=status, error=error.to_status()
    )


def _pending(
    attempt: int, status: int, error: SwitchboardError, delay: timedelta
) -> events_pb2.WebhookDelivery:
    delivery = Delivery(
        state=Delivery.PENDING, attempts=attempt, last_http_status=status, error=error.to_status()
    )
    due = now()
    due.FromNanoseconds(due.ToNanoseconds() + int(delay.total_seconds() * 1e9))
    delivery.next_attempt_time.CopyFrom(due)
    return delivery
