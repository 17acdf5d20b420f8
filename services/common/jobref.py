"""A job's identity: one value, built once where a job enters a process, passed as such.

A job belongs to a client; its id is unique within that client. Every other spelling of it
is derived here and nowhere else: the resource name `jobs/{id}` (the API), the workflow id
`{client}/{id}` (Temporal: looking a job up under the caller's client id is what keeps
clients apart), the event log's Valkey key (hash-tagged on the workflow id, so one job's keys
share a slot), and the request id a generation carries to Triton (`{id}` or `{id}.{stage}`).
"""

from __future__ import annotations

from dataclasses import dataclass

NAME_PREFIX = "jobs/"


@dataclass(frozen=True, slots=True)
class JobRef:
    client: str
    id: str

    @classmethod
    def from_name(cls, client: str, name: str) -> JobRef:
        """From a `jobs/{id}` resource name (validated against the API's pattern before)."""
        return cls(client, name.removeprefix(NAME_PREFIX))

    @classmethod
    def from_workflow_id(cls, workflow_id: str) -> JobRef:
        """Job ids never contain '/', so the last one separates client from job."""
        client, _, job_id = workflow_id.rpartition("/")
        return cls(client, job_id)

    @property
    def name(self) -> str:
        return NAME_PREFIX + self.id

    @property
    def workflow_id(self) -> str:
        return f"{self.client}/{self.id}"

    def key(self, part: str) -> str:
        """A Valkey key of this job (`events`, `states`, ...), in the job's hash slot."""
        return f"sb:{{{self.workflow_id}}}:{part}"

    def request_id(self, stage: str = "") -> str:
        """The id a generation of this job (or of one of its stages) carries to the backend."""
        return f"{self.id}.{stage}" if stage else self.id

    def __str__(self) -> str:
        return self.workflow_id


def client_prefix(client: str) -> str:
    """What every workflow id of this client starts with, for visibility queries."""
    return f"{client}/"
