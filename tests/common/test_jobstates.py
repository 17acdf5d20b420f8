"""Job states: one definition of which states end a job, read from old and new events alike."""

from __future__ import annotations

from google.protobuf import json_format
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st

from switchboard.api.jobs.v1 import events_pb2, job_state_pb2
from switchboard.api.jobs.v1.jobs_pb2 import Job
from switchboard.common import jobstates

ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _event(changed: events_pb2.StateChanged) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(cursor="1-0", job="jobs/j-1", state_changed=changed)


def test_the_event_enum_mirrors_job_state() -> None:
    # StateChanged.state_value converts to Job.State by number: the two enums must agree.
    ours = {v.name: v.number for v in job_state_pb2.JobState.DESCRIPTOR.values}
    theirs = {v.name: v.number for v in Job.State.DESCRIPTOR.values}
    ours.pop("JOB_STATE_UNSPECIFIED")
    theirs.pop("STATE_UNSPECIFIED")
    assert ours == theirs
    assert int(job_state_pb2.JOB_STATE_UNSPECIFIED) == int(Job.STATE_UNSPECIFIED) == 0


def test_the_terminal_states() -> None:
    assert jobstates.TERMINAL_STATE_NAMES == ENDED
    assert {Job.State.Name(s) for s in jobstates.TERMINAL_STATES} == ENDED


@given(st.sampled_from(Job.State.keys()))
def test_old_and_new_events_read_alike(name: str) -> None:
    state = Job.State.Value(name)
    old = _event(events_pb2.StateChanged(state=name))
    new = _event(jobstates.state_changed(state))
    typed_only = _event(
        events_pb2.StateChanged(
            state_value=job_state_pb2.JobState.Value(
                "JOB_STATE_UNSPECIFIED" if state == Job.STATE_UNSPECIFIED else name
            )
        )
    )
    ended = name in ENDED
    assert jobstates.is_terminal(old) is jobstates.is_terminal(new) is ended
    assert jobstates.is_terminal(typed_only) is ended
    assert jobstates.is_terminal_state(name) is jobstates.is_terminal_state(state) is ended
    assert jobstates.state_of(old.state_changed) == jobstates.state_of(new.state_changed) == state


def test_the_typed_value_wins_over_a_stale_name() -> None:
    changed = events_pb2.StateChanged(state="RUNNING", state_value=job_state_pb2.FAILED)
    assert jobstates.state_of(changed) == Job.FAILED
    assert jobstates.is_terminal(_event(changed))


def test_unknown_names_and_other_events_end_nothing() -> None:
    assert jobstates.state_of(events_pb2.StateChanged(state="DONE")) == Job.STATE_UNSPECIFIED
    assert not jobstates.is_terminal_state("succeeded")
    assert not jobstates.is_terminal_state("")
    token = events_pb2.JobEvent(token=events_pb2.TokenDelta(text="hi"))
    assert not jobstates.is_terminal(token)


def test_producers_write_both_spellings_and_json_keeps_state() -> None:
    error = status_pb2.Status(code=13, message="boom")
    changed = jobstates.state_changed(Job.FAILED, error)
    assert (changed.state, int(changed.state_value), changed.error) == ("FAILED", Job.FAILED, error)
    as_json = json_format.MessageToDict(changed)
    assert as_json["state"] == "FAILED"
    assert as_json["stateValue"] == "FAILED"
    assert not jobstates.state_changed(Job.RUNNING).HasField("error")
