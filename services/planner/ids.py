"""Names of jobs, their workflows and their event logs, in one place.

A job lives in Temporal as workflow `{client}/{job_id}`: looking a job up under the caller's
client id is what keeps clients apart, so another client's job is simply not found.
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


def job_name(job_id: str) -> str:
    return f"jobs/{job_id}"


def job_id_of(name: str) -> str:
    """The id in a `jobs/{id}` name; requests were validated against the pattern before."""
    return name.removeprefix("jobs/")


def workflow_id(client_id: str, job_id: str) -> str:
    return f"{client_id}/{job_id}"


def split_workflow_id(wid: str) -> tuple[str, str]:
    """(client_id, job_id); job ids never contain '/', so the last one separates them."""
    client_id, _, job_id = wid.rpartition("/")
    return client_id, job_id


def client_prefix(client_id: str) -> str:
    """Prefix of every workflow id of this client, for visibility queries."""
    return f"{client_id}/"
