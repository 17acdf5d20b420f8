"""`switchboard.client`: the typed, async way for internal callers to use the JobService.

It sets what every internal call needs and callers used to set by hand (the client id, the
internal token, `x-job-id`/`x-session-id` for the mesh's hashing, `traceparent`), resumes a
watch from its last cursor after a dropped connection, waits out `RetryInfo` on a full queue
or an open breaker, and raises `CallFailed` subclasses that carry the `ErrorReason`.
"""

from __future__ import annotations

from .errors import (
    CallFailed,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    call_failed,
)
from .jobs import JobsClient
from .retry import RetryPolicy

__all__ = [
    "CallFailed",
    "FailedPrecondition",
    "InvalidArgument",
    "JobsClient",
    "NotFound",
    "ResourceExhausted",
    "RetryPolicy",
    "Unauthenticated",
    "Unavailable",
    "call_failed",
]
