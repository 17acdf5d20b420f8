"""Composition root of the planner's Temporal worker: `python -m switchboard.planner.work.worker`.

It runs JobWorkflow and its activities; the activities reach the inference service over one
gRPC channel for the whole process, the event logs over one Valkey client and Chroma over one
HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common import telemetry

from .. import process
from ..flows.workflow import JobWorkflow
from ..shared.config import RetrySchedule, WebhookSettings, WorkerSettings
from ..shared.tasks import DELIVER_WEBHOOK, PUBLISH_EVENT
from ..stores.chats import ChatSessions
from ..stores.events import EventLog
from .activities import Activities
from .chat import ChatActivities
from .delivery import Webhooks
from .documents import Documents
from .heartbeats import HeartbeatInterceptor
from .outage import OutageInterceptor
from .records import Generations
from .vectors import VectorStore

# Named explicitly: run with -m, this module is __main__.
log = logging.getLogger("switchboard.planner.work.worker")
# A failed worker is replaced after 1 s, then 2, 4, ... up to 30 s; reset after a long run.
RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 30.0
RESTART_RESET_S = 300.0
# The sandbox is how tests catch workflow code that is not deterministic (the wall clock,
# random numbers, I/O): `build_worker` runs it by default, so every pipeline the tests run, and
# every recorded history the replay test replays, goes through it. The worker process runs
# without it (WorkerSettings.sandbox, off by default): the sandbox's per-run setup and its
# proxied imports cost about a quarter of the worker's CPU per job (ADR 0010).
# Within the sandbox these are imported once for all runs instead of afresh per run (a job
# 150 -> 105 ms here). All are deterministic: generated messages, pure helpers, and the
# workflow code itself (`flows`, which imports no I/O client and keeps no state at module
# level, both held by import-linter contracts and tests).
PASSTHROUGH_MODULES = (
    "google.protobuf",
    "google.rpc",
    "grpc",
    "switchboard.api",
    "switchboard.common",
    "switchboard.planner.shared",
    "switchboard.planner.flows",
)
SANDBOXED = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
)


def build_worker(
    client: Client,
    task_queue: str,
    activities: Activities,
    *,
    heartbeat_throttle_seconds: float = 1.0,
    grace_seconds: float = 10.0,
    webhooks: Webhooks | None = None,
    chat: ChatActivities | None = None,
    documents: Documents | None = None,
    schedule: RetrySchedule | None = None,
    sandboxed: bool = True,
) -> Worker:
    # Temporal tells an activity about a cancel only in a heartbeat's reply, so heartbeats
    # are sent often enough for a cancelled job to stop within about this interval.
    throttle = timedelta(seconds=heartbeat_throttle_seconds)
    # Without settings no secret is known: a job's webhook then fails as WEBHOOK_SECRET_MISSING.
    webhooks = webhooks or Webhooks(WebhookSettings())
    # Without a session store the chat activities are not served: a chat job fails here.
    chatting: list[Callable[..., Any]] = []
    if chat is not None:
        chatting = [chat.load_session, chat.append_turn]
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[JobWorkflow],
        workflow_runner=SANDBOXED if sandboxed else UnsandboxedWorkflowRunner(),
        activities=[
            activities.generate,
            activities.generate_stage,
            activities.embed,
            activities.publish_event,
            webhooks.deliver_webhook,
            *chatting,
            *_documenting(documents),
        ],
        max_heartbeat_throttle_interval=throttle,
        default_heartbeat_throttle_interval=throttle,
        graceful_shutdown_timeout=timedelta(seconds=grace_seconds),
        # Every activity with a heartbeat timeout heartbeats while it runs. Every activity's
        # failure is answered by the outage schedule; webhook delivery keeps its own, and
        # the job's events (publish_event) never give up at their start.
        interceptors=[
            HeartbeatInterceptor(),
            OutageInterceptor(
                schedule or RetrySchedule(), exempt=frozenset({DELIVER_WEBHOOK, PUBLISH_EVENT})
            ),
        ],
    )


async def run(settings: WorkerSettings) -> None:
    client = await process.connect_temporal(settings.temporal_address, settings.temporal_namespace)
    valkey_client = process.valkey_client(settings.valkey_url)
    channel = grpc.aio.insecure_channel(settings.inference_address)
    inference = inference_pb2_grpc.InferenceServiceStub(channel)
    vectors = VectorStore(settings.chroma_url)
    # One log for every activity: `log` events kept while Valkey is down go out, in order,
    # before the job's next event from any of them.
    events = EventLog(valkey_client)
    activities = Activities(
        inference, events, schedule=settings.retry, generations=Generations(valkey_client)
    )

    def build() -> Worker:
        return build_worker(
            client,
            settings.task_queue,
            activities,
            heartbeat_throttle_seconds=settings.heartbeat_throttle_seconds,
            grace_seconds=settings.grace_seconds,
            webhooks=Webhooks(settings.webhooks, events),
            chat=ChatActivities(
                ChatSessions(
                    valkey_client,
                    window=settings.chat_window_messages,
                    ttl_seconds=settings.chat_window_ttl_seconds,
                )
            ),
            documents=Documents(inference, events, vectors),
            schedule=settings.retry,
            sandboxed=settings.sandbox,
        )

    current: list[Worker] = []
    running = asyncio.create_task(_keep_running(build, current))
    # The launcher takes a served /metrics as "ready", so it is served once the worker runs.
    telemetry.serve_metrics(settings.metrics_port, settings.metrics_host)
    stop = asyncio.create_task(process.wait_for_stop())
    log.info("ready", extra={"fields": {"task_queue": settings.task_queue}})
    try:
        await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not running.done():
            if current:
                with contextlib.suppress(Exception):  # a worker that failed already
                    await current[-1].shutdown()
            running.cancel()  # between two workers: no new one
        await channel.close(grace=None)
        await vectors.close()
        await valkey_client.aclose()
    with contextlib.suppress(asyncio.CancelledError):
        running.result()  # a worker that died on its own makes the process fail
    log.info("stopped")


async def _keep_running(build: Callable[[], Worker], current: list[Worker]) -> None:
    """Runs a worker, and a new one (on the same client, with backoff) whenever it fails:
    the SDK gives up polling when Temporal stays unreachable for about a minute, and a
    Temporal that is back must find this process serving again without a restart."""
    delay = RESTART_INITIAL_S
    while True:
        worker = build()
        current.append(worker)
        del current[:-1]
        started = asyncio.get_running_loop().time()
        try:
            await worker.run()
            return  # shut down on purpose
        except Exception as e:  # noqa: BLE001 - whatever failed it (poll failures vary)
            log.warning("worker failed; starting another", extra={"fields": {"error": repr(e)}})
        if asyncio.get_running_loop().time() - started > RESTART_RESET_S:
            delay = RESTART_INITIAL_S
        await asyncio.sleep(delay)
        delay = min(delay * 2, RESTART_MAX_S)


def _documenting(documents: Documents | None) -> list[Callable[..., Any]]:
    """The document pipelines' activities; without Chroma (None) their jobs fail here."""
    if documents is None:
        return []
    d = documents
    return [d.extract_document, d.chunk_text, d.index_chunks, d.search_collection]


def main() -> None:
    settings = WorkerSettings.from_env(os.environ)
    telemetry.setup("worker", settings.log_level)
    asyncio.run(run(settings))
    process.exit_after_shutdown()


if __name__ == "__main__":
    main()
