"""JobRef: every spelling of a job's identity round-trips through the one value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchboard.common.jobref import JobRef, client_prefix

# As the API and the planner allow them: client ids may hold '/'-free punctuation, job ids
# never hold '/'.
clients = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._@:-]{0,20}\Z")
job_ids = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,20}\Z")


@given(clients, job_ids)
def test_every_spelling_round_trips(client: str, job_id: str) -> None:
    job = JobRef(client, job_id)
    assert JobRef.from_workflow_id(job.workflow_id) == job
    assert JobRef.from_name(client, job.name) == job
    assert job.workflow_id.startswith(client_prefix(client))


def test_the_spellings() -> None:
    job = JobRef("acme", "j-1")
    assert (job.name, job.workflow_id, str(job)) == ("jobs/j-1", "acme/j-1", "acme/j-1")
    assert job.key("events") == "sb:{acme/j-1}:events"
    assert (job.request_id(), job.request_id("summary")) == ("j-1", "j-1.summary")


def test_a_client_id_with_slashes_keeps_them() -> None:
    """rpartition: only the last '/' separates (job ids have none)."""
    assert JobRef.from_workflow_id("a/b/j-1") == JobRef("a/b", "j-1")
