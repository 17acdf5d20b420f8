"""New job ids, and the check of a client id.

Every spelling of a job's identity (its name, workflow id, Valkey keys, request ids) is
derived from `switchboard.common.jobref.JobRef`, built once where a job enters a process.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from .errors import ClientIdInvalid

# No '/' (it separates client from job) and no quotes (client ids go into visibility queries).
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise ClientIdInvalid("x-client-id has characters a client id cannot have")
    return client_id


def new_job_id() -> str:
    """`j-` and 20 hex digits: matches the job id pattern of the API."""
    return "j-" + secrets.token_hex(10)


def idempotent_job_id(key: str) -> str:
    """`k-` and 32 hex digits of sha256(key): the same key always names the same job (of the
    caller: the workflow id adds the client), and matches the job id pattern of the API."""
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:32]
