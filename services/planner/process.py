"""What both planner processes share: a traced Temporal connection, a Valkey client that
rides out a restart of Valkey, and waiting for a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import NoReturn

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from valkey import exceptions as valkey_errors
from valkey.asyncio import Valkey
from valkey.asyncio.retry import Retry
from valkey.backoff import ExponentialBackoff

log = logging.getLogger(__name__)


async def connect_temporal(address: str, namespace: str, *, wait_seconds: float = 30.0) -> Client:
    """Connects, retrying while Temporal starts; the interceptor carries W3C trace context
    from callers into workflows and activities (a worker built on this client inherits it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        try:
            return await Client.connect(
                address, namespace=namespace, interceptors=[TracingInterceptor()]
            )
        except RuntimeError as e:
            if loop.time() >= deadline:
                raise
            log.info("temporal not reachable yet", extra={"fields": {"error": str(e)}})
            await asyncio.sleep(1.0)


def valkey_client(url: str) -> Valkey:
    """The process's Valkey client. After Valkey restarts, every pooled connection is stale:
    a command on one reconnects and is sent again (a few times, backing off), instead of
    failing once per pooled connection. A longer outage fails the command (the callers
    translate that into EVENT_LOG_UNAVAILABLE and the like, which activities wait out)."""
    client: Valkey = Valkey.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        retry_on_error=[valkey_errors.ConnectionError, valkey_errors.TimeoutError],
    )
    return client


async def wait_for_stop() -> str:
    """Returns the name of the first SIGTERM or SIGINT received."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _settle, received, sig.name)
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _settle(future: asyncio.Future[str], name: str) -> None:
    if not future.done():
        future.set_result(name)


def exit_after_shutdown() -> NoReturn:
    """Leaves a process that has already shut down cleanly, skipping interpreter finalisation.

    Finalisation can abort while the Temporal core's and gRPC's native threads wind down
    (seen: "PyGILState_Release: thread state ... must be current", SIGABRT, exit -6), which
    would turn a clean stop into a crash.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
