"""`log` events the event log could not take, kept by the process until it can.

A job's progress lines must not fail its work while Valkey is away, nor appear twice when a
retried append's first try did land: each kept event carries a token, and a script appends
it once per token. Kept events go out in order, before the job's next event from this
process; what one process keeps is bounded (per job, and in jobs).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from switchboard.common.jobref import JobRef

from .entries import ONCE, AppendOnce, reachable

log = logging.getLogger(__name__)

# What one process keeps of `log` events the log could not take.
BACKLOG_PER_JOB = 100
BACKLOG_JOBS = 10_000


class Backlog:
    """Per job, in order: (token, serialized event) of `log` events not yet appended."""

    def __init__(self, append_once: AppendOnce, *, ttl_seconds: int) -> None:
        self._append_once = append_once
        self._ttl = ttl_seconds
        self._kept: dict[JobRef, list[tuple[str, bytes]]] = {}
        self._flushing = asyncio.Lock()

    def keep(self, job: JobRef, data: bytes) -> None:
        """Keeps a serialized `log` event for the next flush, within the bounds."""
        self._kept.setdefault(job, []).append((uuid.uuid4().hex, data))
        self._bound(job)

    def kept(self, job: JobRef) -> int:
        """How many `log` events of the job wait for the log."""
        return len(self._kept.get(job, ()))

    async def flush(self, job: JobRef) -> None:
        """Appends the job's kept `log` events, oldest first; raises EventLogUnavailable (and
        keeps the rest) when the log is still down."""
        if job not in self._kept:
            return
        async with self._flushing:
            pending = self._kept.get(job, [])
            while pending:
                token, data = pending[0]
                with reachable():
                    await self.append_once(job, token, data)
                pending.pop(0)
            self._kept.pop(job, None)

    async def append_once(self, job: JobRef, token: str, data: bytes) -> Any:
        """Appends a serialized event unless one with this token was; the entry id either way.
        Raises valkey's own errors (callers translate them)."""
        return await self._append_once(job, ONCE, token, data, self._ttl, stream=False)

    def _bound(self, job: JobRef) -> None:
        pending = self._kept[job]
        if len(pending) > BACKLOG_PER_JOB:
            del pending[0]
            log.warning("kept log events over the limit: the oldest dropped")
        while len(self._kept) > BACKLOG_JOBS:
            del self._kept[next(iter(self._kept))]
            log.warning("kept log events of too many jobs: a job's dropped")
