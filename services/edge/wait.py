"""`Prefer: wait=N` (RFC 7240) on POST /v1/jobs: hold the answer until the job ends or N s.

The edge follows the job's events through the hub (sharing the upstream WatchJob with any
SSE subscriber of the job on this edge) until the terminal event, so waiting costs one
stream read per event, not a poll per interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common.callmetadata import Metadata
from switchboard.common.errors import SwitchboardError
from switchboard.common.jobstates import is_terminal

from .headers import delta_seconds
from .hub import Hub
from .sse import Tick

log = logging.getLogger(__name__)


def preferred_wait(prefer_headers: Iterable[str], cap_seconds: float) -> int | None:
    """Seconds to wait per the first `wait` preference, at most `cap_seconds`; None when there
    is none, it is not delta-seconds (ignored, as RFC 7240 asks) or it comes to 0."""
    for header in prefer_headers:
        for preference in header.split(","):
            name, _, value = preference.partition(";")[0].partition("=")
            if name.strip().lower() != "wait":
                continue
            seconds = delta_seconds(value.strip().strip('"'))
            if seconds is None:
                return None
            return min(seconds, int(cap_seconds)) or None
    return None


@dataclass
class Ending:
    """How a wait ended: `finished` when the job reached its end within it; `events`, newest
    first, the terminal event and the `result` event before it, when the stream had them."""

    finished: bool = False
    events: list[events_pb2.JobEvent] = field(default_factory=list)


async def until_finished(
    hub: Hub, client: str, job: str, metadata: Metadata, seconds: float
) -> Ending:
    """Follows `job` until its terminal event, for at most `seconds`."""
    subscription = hub.subscribe(client, job, "", metadata)
    result: events_pb2.JobEvent | None = None
    try:
        async with asyncio.timeout(seconds):
            while True:
                item = await subscription.next(seconds)
                if item is Tick.END:
                    return Ending(finished=True)
                if not isinstance(item, events_pb2.JobEvent):
                    continue
                if item.HasField("result"):
                    result = item
                if is_terminal(item):
                    return Ending(True, [item] + ([result] if result is not None else []))
    except TimeoutError:
        return Ending()
    except SwitchboardError as exc:
        # The job exists either way; answering 202 lets the client follow it itself.
        log.info("wait ended early", extra={"fields": {"reason": exc.reason}})
        return Ending()
    finally:
        subscription.close(client_left=False)
