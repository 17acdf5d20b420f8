"""The metadata of an internal gRPC call, built in one place.

The planner believes `x-client-id` only beside the internal token; the meshes hash JobService
calls on `x-job-id` and InferenceService calls on `x-session-id` (hashkeys.py); every hop
continues the caller's trace from `traceparent`. The edge and `switchboard.client` both send
these and may not import each other (pyproject's import contracts), so the builder is here.
"""

from __future__ import annotations

from typing import Final

from . import telemetry
from .hashkeys import JOB_ID_HEADER, SESSION_ID_HEADER

CLIENT_ID_HEADER: Final = "x-client-id"
# The planner believes `x-client-id` only beside this shared secret (docs/planner.md).
INTERNAL_HEADER: Final = "x-switchboard-internal"

Metadata = tuple[tuple[str, str], ...]


def identity(
    client: str = "", *, internal_token: str = "", job_id: str = "", session_id: str = ""
) -> Metadata:
    """Who calls and what the mesh hashes on; an empty value is left out, not sent empty."""
    pairs = (
        (CLIENT_ID_HEADER, client),
        (INTERNAL_HEADER, internal_token),
        (JOB_ID_HEADER, job_id),
        (SESSION_ID_HEADER, session_id),
    )
    return tuple((key, value) for key, value in pairs if value)


def call_metadata(
    client: str, *, internal_token: str = "", job_id: str = "", session_id: str = ""
) -> Metadata:
    """`identity` plus the current trace's `traceparent`: build it in the task whose span
    the call belongs to (the trace context is the task's)."""
    pairs = identity(client, internal_token=internal_token, job_id=job_id, session_id=session_id)
    return telemetry.trace_metadata(*pairs)
