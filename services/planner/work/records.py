"""Finished generations, recorded so that a retried activity does not generate again.

An activity is at-least-once: one that finished while Temporal could not take its completion
(an outage, a dying worker) runs again. A generation records its result before its activity
returns, in Valkey under `sb:{<client>/<job_id>}:generated:<stage>` (the job's hash tag; a
long TTL), with the workflow run and activity id that produced it; a later attempt of the
same activity finds it and returns it without calling inference or logging any token.

A record that cannot be written (Valkey down just as the generation ends) is kept in the
process as well, so a retry on the same worker still finds it (and writes it then).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable
from typing import cast

from temporalio import activity
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import pipelines_pb2
from switchboard.common.jobref import JobRef

from ..stores.events import reachable

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MEMO_LIMIT = 1024
_RUN, _OUTPUT = b"run", b"output"


def record_key(ref: JobRef, stage: str) -> str:
    return ref.key(f"generated:{stage or '-'}")


class Generations:
    """Finished generations of the running activity's workflow run, by job and stage."""

    def __init__(self, client: Valkey, *, ttl_seconds: int = DEFAULT_TTL_SECONDS) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._memo: OrderedDict[tuple[JobRef, str], tuple[str, bytes]] = OrderedDict()

    async def find(self, ref: JobRef, stage: str) -> pipelines_pb2.GenerateOutput | None:
        """The result this activity recorded in an earlier attempt, if any."""
        owner = _owner()
        kept = self._memo.get((ref, stage))
        if kept is not None and kept[0] == owner:
            return pipelines_pb2.GenerateOutput.FromString(kept[1])
        with reachable():
            pending = self._client.hmget(record_key(ref, stage), [_RUN, _OUTPUT])
            run, output = await cast(Awaitable[list[bytes | None]], pending)
        if run is None or output is None or run.decode() != owner:
            return None  # none, or another run's (a job id used again)
        return pipelines_pb2.GenerateOutput.FromString(output)

    async def record(self, ref: JobRef, stage: str, output: pipelines_pb2.GenerateOutput) -> None:
        """Records the result (raises EventLogUnavailable when Valkey cannot take it; the
        process keeps it meanwhile)."""
        owner, data = _owner(), output.SerializeToString()
        self._memo[(ref, stage)] = (owner, data)
        self._memo.move_to_end((ref, stage))
        while len(self._memo) > MEMO_LIMIT:
            self._memo.popitem(last=False)
        key = record_key(ref, stage)
        with reachable():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={_RUN: owner, _OUTPUT: data})
                pipe.expire(key, self._ttl)
                await pipe.execute()


def _owner() -> str:
    """The workflow run and activity whose attempts share one record."""
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}"
