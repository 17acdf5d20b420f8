"""Webhook delivery (`delivery.py` and the workflow's end): one attempt at a time through
Temporal's ActivityEnvironment, then whole jobs through the real planner (CreateJob, GetJob,
WatchJob), worker, Temporal and Valkey to a real HTTP receiver on 127.0.0.1 (allow-listed)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import standardwebhooks
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.jobref import JobRef
from switchboard.common.settings import Secret
from switchboard.planner.shared.config import WebhookSettings
from switchboard.planner.stores.events import EventLog
from switchboard.planner.work.activities import Activities
from switchboard.planner.work.delivery import Webhooks
from switchboard.planner.work.worker import build_worker

from .fake_inference import FakeInference
from .receivers import Reply, receiving
from .support import WAIT_S, Planner, create_request, eventually, running_planner

Job = jobs_pb2.Job
Delivery = events_pb2.WebhookDelivery


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def _outcome(delivery: Delivery) -> tuple[int, int, int]:
    """(state, attempts, last HTTP status) of a delivery."""
    return delivery.state, delivery.attempts, delivery.last_http_status


def reason(status: status_pb2.Status) -> str:
    info = error_details_pb2.ErrorInfo()
    return next((info.reason for d in status.details if d.Unpack(info)), "")


# --- one attempt ------------------------------------------------------------------------------


def _settings(client_id: str, **overrides: Any) -> WebhookSettings:
    base = WebhookSettings(
        secrets={client_id: Secret(new_secret())},
        allow=("127.0.0.1",),
        timeout_seconds=2.0,
        initial_interval_seconds=0.5,
        max_interval_seconds=10.0,
        max_attempts=4,
    )
    return dataclasses.replace(base, **overrides)


def _attempt(job_id: str, attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=f"acme/{job_id}", attempt=attempt)
    return env


def _job(url: str) -> Job:
    return Job(name="jobs/j-1", state=Job.SUCCEEDED, client="acme", webhook_url=url)


async def _retry_delay(replies: list[Reply], settings: WebhookSettings) -> timedelta | None:
    """The delay the activity asks for after one failed attempt."""
    async with receiving(replies) as receiver:
        with pytest.raises(ApplicationError) as caught:
            await _attempt("j-1", 1).run(Webhooks(settings).deliver_webhook, _job(receiver.url()))
    assert caught.value.type == "WEBHOOK_DELIVERY_FAILED"
    assert not caught.value.non_retryable
    return caught.value.next_retry_delay


@pytest.mark.asyncio
async def test_a_failed_attempt_is_retried_on_the_schedule_or_after_retry_after() -> None:
    settings = _settings("acme")
    assert await _retry_delay([503], settings) == timedelta(seconds=0.5)
    assert await _retry_delay([(429, {"retry-after": "3"})], settings) == timedelta(seconds=3)
    assert await _retry_delay([(503, {"retry-after": "0"})], settings) == timedelta(seconds=0.5)
    # More than the schedule's longest interval: capped to it. Absurd: ignored.
    assert await _retry_delay([(429, {"retry-after": "60"})], settings) == timedelta(seconds=10)
    assert await _retry_delay([(429, {"retry-after": "soon"})], settings) == timedelta(seconds=0.5)


@pytest.mark.asyncio
async def test_an_attempt_that_cannot_succeed_later_returns_the_failure_at_once() -> None:
    async with receiving([410]) as receiver:
        webhooks = Webhooks(_settings("acme"))
        outcome = await _attempt("j-1", 1).run(webhooks.deliver_webhook, _job(receiver.url()))
    assert _outcome(outcome) == (Delivery.FAILED, 1, 410)
    assert reason(outcome.error) == "WEBHOOK_RECEIVER_REFUSED"
    assert outcome.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]


@pytest.mark.asyncio
async def test_the_last_attempt_returns_the_failure_and_a_later_one_sends_nothing() -> None:
    settings = _settings("acme", max_attempts=2)
    async with receiving([500]) as receiver:
        webhooks = Webhooks(settings)
        last = await _attempt("j-1", 2).run(webhooks.deliver_webhook, _job(receiver.url()))
        past = await _attempt("j-1", 3).run(webhooks.deliver_webhook, _job(receiver.url()))
    assert _outcome(last) == (Delivery.FAILED, 2, 500)
    assert reason(last.error) == "WEBHOOK_DELIVERY_FAILED"
    assert (past.state, past.attempts) == (Delivery.FAILED, 2)  # retried after a timeout
    assert len(receiver.requests) == 1


@pytest.mark.asyncio
async def test_a_missing_secret_is_final() -> None:
    async with receiving([200]) as receiver:
        webhooks = Webhooks(_settings("someone-else"))
        outcome = await _attempt("j-1", 1).run(webhooks.deliver_webhook, _job(receiver.url()))
    assert (outcome.state, reason(outcome.error)) == (Delivery.FAILED, "WEBHOOK_SECRET_MISSING")
    assert receiver.requests == []


@pytest.mark.asyncio
async def test_a_failed_attempt_is_logged_to_the_job_with_its_next_time(
    valkey_client: Valkey,
) -> None:
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    events = EventLog(valkey_client)
    async with receiving([(503, {"retry-after": "2"})]) as receiver:
        webhooks = Webhooks(_settings("acme"), events)
        with pytest.raises(ApplicationError):
            await _attempt(job_id, 1).run(webhooks.deliver_webhook, _job(receiver.url()))
    (logged,) = [e async for e in _stored(events, f"acme/{job_id}")]
    pending = logged.webhook
    assert _outcome(pending) == (Delivery.PENDING, 1, 503)
    assert reason(pending.error) == "WEBHOOK_DELIVERY_FAILED"
    wait = pending.next_attempt_time.ToDatetime() - logged.create_time.ToDatetime()
    assert timedelta(seconds=1.9) <= wait <= timedelta(seconds=2.1)


async def _stored(events: EventLog, wid: str) -> AsyncIterator[events_pb2.JobEvent]:
    entries = await events.client.xrange(f"sb:{{{wid}}}:events")
    for _, fields in entries:
        yield events_pb2.JobEvent.FromString(fields[b"e"])


# --- whole jobs -------------------------------------------------------------------------------


@dataclass
class Stack:
    planner: Planner
    client: Client
    secret: str

    async def run(self, webhook_url: str) -> tuple[Job, list[events_pb2.JobEvent]]:
        """Creates a job, waits for its workflow to end (webhook included); the job as GetJob
        shows it, and its events as a WatchJob from the start replays them."""
        request = create_request("echo", "hi there")
        request.job.webhook_url = webhook_url
        created = await self.planner.stub.CreateJob(request, metadata=self.planner.md())
        wid = JobRef.from_name(self.planner.client_id, created.name).workflow_id
        async with asyncio.timeout(WAIT_S):
            await self.client.get_workflow_handle(wid).result()
        return await self.planner.get(created.name), await self.planner.watch(created.name)


@asynccontextmanager
async def webhook_stack(
    temporal_client: Client,
    valkey_client: Valkey,
    inference: tuple[FakeInference, str],
    max_attempts: int,
) -> AsyncIterator[Stack]:
    fake, address = inference
    task_queue = f"test-{uuid.uuid4().hex}"
    secret = new_secret()
    channel = grpc.aio.insecure_channel(address)
    events = EventLog(valkey_client)
    activities = Activities(inference_pb2_grpc.InferenceServiceStub(channel), events)
    try:
        async with running_planner(temporal_client, valkey_client, fake, task_queue) as planner:
            settings = WebhookSettings(
                secrets={planner.client_id: Secret(secret)},
                # Not this client's: a wrong pick fails to verify.
                default_secret=Secret(new_secret()),
                allow=("127.0.0.1",),
                timeout_seconds=2.0,
                initial_interval_seconds=0.2,
                max_attempts=max_attempts,
            )
            webhooks = Webhooks(settings, events)
            worker = build_worker(
                temporal_client, task_queue, activities, grace_seconds=1.0, webhooks=webhooks
            )
            async with worker:
                yield Stack(planner, temporal_client, secret)
    finally:
        await channel.close(grace=None)


def _webhook_events(seen: list[events_pb2.JobEvent]) -> list[events_pb2.WebhookDelivery]:
    return [e.webhook for e in seen if e.HasField("webhook")]


def _after_the_end(seen: list[events_pb2.JobEvent]) -> list[str]:
    """The payload kinds from the terminal state change on."""
    kinds: list[str] = [e.WhichOneof("payload") or "" for e in seen]
    end = max(i for i, kind in enumerate(kinds) if kind == "state_changed")
    return kinds[end:]


@pytest.mark.asyncio
async def test_a_delivery_retried_until_delivered_shows_on_the_job_and_in_its_log(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with (
        receiving([500, 500, 200]) as receiver,
        webhook_stack(temporal_client, valkey_client, inference, max_attempts=5) as stack,
    ):
        job, seen = await stack.run(receiver.url())
        # A follower resuming from the terminal event (an SSE reconnect) gets the rest.
        terminal = next(e for e in seen if e.state_changed.state == "SUCCEEDED")
        resumed = await stack.planner.watch(job.name, after=terminal.cursor)
        past_everything = await stack.planner.watch(job.name, after=seen[-1].cursor)

    assert job.state == Job.SUCCEEDED
    delivery = job.webhook_delivery
    assert _outcome(delivery) == (Delivery.DELIVERED, 3, 200)
    assert delivery.HasField("deliver_time") and not delivery.HasField("error")
    logged = _webhook_events(seen)
    assert [_outcome(w) for w in logged] == [
        (Delivery.PENDING, 1, 500),
        (Delivery.PENDING, 2, 500),
        (Delivery.DELIVERED, 3, 200),
    ]
    assert logged[-1] == delivery
    assert _after_the_end(seen) == ["state_changed", "webhook", "webhook", "webhook"]
    assert _webhook_events(resumed) == logged
    assert past_everything == []

    # Signed, one id for every attempt, the job as it ended (without its delivery status).
    assert len(receiver.requests) == 3
    assert len({headers["webhook-id"] for _, headers, _ in receiver.requests}) == 1
    _, headers, body = receiver.requests[-1]
    message = standardwebhooks.Webhook(stack.secret).verify(body, headers)
    assert message["type"] == "job.completed"
    assert message["data"]["job"]["name"] == job.name
    assert message["data"]["job"]["state"] == "SUCCEEDED"
    assert "webhookDelivery" not in message["data"]["job"]
    assert message["data"]["result_url"] == f"/v1/{job.name}/result"
    assert json.loads(body) == message


@pytest.mark.asyncio
async def test_a_forbidden_destination_is_refused_at_the_first_attempt(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with webhook_stack(temporal_client, valkey_client, inference, 50) as stack:
        # 127.0.0.1 is allow-listed; this spelling of it is not (it was retried 50 times).
        job, seen = await stack.run("http://0177.0.0.1:9/hook")
        wid = JobRef.from_name(stack.planner.client_id, job.name).workflow_id
        history = await stack.client.get_workflow_handle(wid).fetch_history()

    assert job.state == Job.SUCCEEDED  # a failed delivery leaves the job's state alone
    delivery = job.webhook_delivery
    assert _outcome(delivery) == (Delivery.FAILED, 1, 0)
    assert reason(delivery.error) == "WEBHOOK_DESTINATION_FORBIDDEN"
    assert _webhook_events(seen) == [delivery]
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert started[-2:] == [1, 1]  # deliver_webhook once, then the webhook event's publish


@pytest.mark.asyncio
async def test_a_receiver_that_refuses_for_good_is_not_asked_again(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with (
        receiving([410]) as receiver,
        webhook_stack(temporal_client, valkey_client, inference, max_attempts=5) as stack,
    ):
        job, seen = await stack.run(receiver.url())

    assert len(receiver.requests) == 1
    delivery = job.webhook_delivery
    assert _outcome(delivery) == (Delivery.FAILED, 1, 410)
    assert reason(delivery.error) == "WEBHOOK_RECEIVER_REFUSED"
    assert _webhook_events(seen) == [delivery]


@pytest.mark.asyncio
async def test_a_delivery_whose_every_attempt_fails_ends_failed(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    """A 302 is retried (a temporary redirect) and never followed."""
    async with (
        receiving([302]) as receiver,
        webhook_stack(temporal_client, valkey_client, inference, max_attempts=2) as stack,
    ):
        job, seen = await stack.run(receiver.url())
        listed = await stack.planner.stub.ListJobs(
            jobs_pb2.ListJobsRequest(), metadata=stack.planner.md()
        )

    assert job.state == Job.SUCCEEDED
    assert [path for path, _, _ in receiver.requests] == ["/hook", "/hook"]
    delivery = job.webhook_delivery
    assert _outcome(delivery) == (Delivery.FAILED, 2, 302)
    assert reason(delivery.error) == "WEBHOOK_DELIVERY_FAILED"
    assert [w.state for w in _webhook_events(seen)] == [Delivery.PENDING, Delivery.FAILED]
    assert [j.webhook_delivery for j in listed.jobs] == [delivery]
    shown = json_format.MessageToDict(job)["webhookDelivery"]
    assert (shown["state"], shown["attempts"], shown["lastHttpStatus"]) == ("FAILED", 2, 302)


@pytest.mark.asyncio
async def test_a_job_without_a_webhook_shows_no_delivery(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with webhook_stack(temporal_client, valkey_client, inference, 2) as stack:
        job, seen = await stack.run("")
    assert job.state == Job.SUCCEEDED and not job.HasField("webhook_delivery")
    assert _webhook_events(seen) == []


@pytest.mark.asyncio
async def test_the_ended_job_shows_its_delivery_pending_meanwhile(
    temporal_client: Client, valkey_client: Valkey, inference: tuple[FakeInference, str]
) -> None:
    async with (
        receiving([(503, {"retry-after": "3"}), 204]) as receiver,
        webhook_stack(temporal_client, valkey_client, inference, max_attempts=3) as stack,
    ):
        request = create_request("echo", "hi there")
        request.job.webhook_url = receiver.url()
        created = await stack.planner.stub.CreateJob(request, metadata=stack.planner.md())

        async def asked() -> bool:
            return bool(receiver.requests)

        await eventually(asked)
        meanwhile = await stack.planner.get(created.name)
        seen = await stack.planner.watch(created.name)  # a live watch ends at the end
        wid = JobRef.from_name(stack.planner.client_id, created.name).workflow_id
        async with asyncio.timeout(WAIT_S):
            await stack.client.get_workflow_handle(wid).result()
        after = await stack.planner.get(created.name)

    assert meanwhile.state == Job.SUCCEEDED
    assert meanwhile.webhook_delivery == Delivery(state=Delivery.PENDING)
    # The watch did not wait for the delivery: at most the first attempt's failure was there.
    assert [w.state for w in _webhook_events(seen)] in ([], [Delivery.PENDING])
    assert (after.webhook_delivery.state, after.webhook_delivery.attempts) == (
        Delivery.DELIVERED,
        2,
    )
    assert receiver.times[1] - receiver.times[0] >= 2.9  # the receiver's Retry-After
