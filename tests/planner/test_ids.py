"""Job and workflow ids: generated ids fit the API pattern, client ids cannot break out."""

from __future__ import annotations

import re

import pytest

from switchboard.common.jobref import JobRef
from switchboard.planner.shared import ids
from switchboard.planner.shared.errors import ClientIdInvalid

JOB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")  # from CreateJobRequest.job_id


def test_generated_ids_match_the_api_pattern_and_differ() -> None:
    generated = {ids.new_job_id() for _ in range(100)}
    assert len(generated) == 100
    assert all(JOB_ID.match(job_id) for job_id in generated)


def test_workflow_id_splits_back() -> None:
    wid = JobRef("team.a@corp", "j-1").workflow_id
    assert JobRef.from_workflow_id(wid) == JobRef("team.a@corp", "j-1")


@pytest.mark.parametrize("client_id", ["", "a/b", "a'b", 'a"b', "a b", "x" * 200])
def test_client_ids_that_could_escape_their_prefix_are_refused(client_id: str) -> None:
    with pytest.raises(ClientIdInvalid):
        ids.check_client_id(client_id)
