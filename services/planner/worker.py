"""Composition root of the planner's Temporal worker: `python -m switchboard.planner.worker`.

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
from temporalio.worker import Worker
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2_grpc
from switchboard.common import telemetry

from . import process
from .activities import Activities
from .chat import ChatActivities, ChatSessions
from .config import WebhookSettings, WorkerSettings
from .delivery import Webhooks
from .documents import Documents
from .events import EventLog
from .vectors import VectorStore
from .workflows import JobWorkflow

# Named explicitly: run with -m, this module is __main__.
log = logging.getLogger("switchboard.planner.worker")


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
    )


async def run(settings: WorkerSettings) -> None:
    client = await process.connect_temporal(settings.temporal_address, settings.temporal_namespace)
    valkey_client = Valkey.from_url(settings.valkey_url)
    channel = grpc.aio.insecure_channel(settings.inference_address)
    inference = inference_pb2_grpc.InferenceServiceStub(channel)
    vectors = VectorStore(settings.chroma_url)
    events = EventLog(valkey_client)
    activities = Activities(inference, events)
    worker = build_worker(
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
        documents=Documents(inference, EventLog(valkey_client), vectors),
    )
    running = asyncio.create_task(worker.run())
    # The launcher takes a served /metrics as "ready", so it is served once the worker runs.
    telemetry.serve_metrics(settings.metrics_port)
    stop = asyncio.create_task(process.wait_for_stop())
    log.info("ready", extra={"fields": {"task_queue": settings.task_queue}})
    try:
        await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not running.done():
            await worker.shutdown()
        await channel.close(grace=None)
        await vectors.close()
        await valkey_client.aclose()
    with contextlib.suppress(asyncio.CancelledError):
        running.result()  # a worker that died on its own makes the process fail
    log.info("stopped")


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
