"""A job's states: which of them end a job, and how to read one from an event.

The one definition every service uses. A job's state is `Job.State`; a `state_changed`
event carries it twice (`events.proto` cannot import `Job.State`): typed in `state_value`
(`JobState`, the same names and numbers) and as the name in `state`, the legacy spelling JSON
clients read. Events logged by older producers carry only the name, so readers go through
`state_of`, which takes either.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from google.rpc import status_pb2

from switchboard.api.jobs.v1 import events_pb2, job_state_pb2
from switchboard.api.jobs.v1.jobs_pb2 import Job

State: TypeAlias = Job.State.ValueType

# Every accepted job ends in exactly one of these.
TERMINAL_STATES: Final[frozenset[State]] = frozenset({Job.SUCCEEDED, Job.FAILED, Job.CANCELLED})
# Their names, for stores keyed by name (the planner's per-job state hash in Valkey).
TERMINAL_STATE_NAMES: Final[frozenset[str]] = frozenset(Job.State.Name(s) for s in TERMINAL_STATES)


def state_of(changed: events_pb2.StateChanged) -> State:
    """The typed state of a state change; STATE_UNSPECIFIED when it names none we know."""
    if changed.state_value != job_state_pb2.JOB_STATE_UNSPECIFIED:
        return Job.State.ValueType(changed.state_value)
    return parse_state(changed.state)


def parse_state(name: str) -> State:
    """A state from its name; STATE_UNSPECIFIED for a name that is not one (never raises)."""
    try:
        return Job.State.Value(name)
    except ValueError:
        return Job.STATE_UNSPECIFIED


def is_terminal_state(state: State | str) -> bool:
    """Whether a job in this state has ended; takes the enum value or its name."""
    return (parse_state(state) if isinstance(state, str) else state) in TERMINAL_STATES


def is_terminal(event: events_pb2.JobEvent) -> bool:
    """Whether the event ends the job's live event stream (its terminal state change)."""
    return event.HasField("state_changed") and state_of(event.state_changed) in TERMINAL_STATES


def state_changed(state: State, error: status_pb2.Status | None = None) -> events_pb2.StateChanged:
    """A state change as producers write it: the typed value and the legacy name together."""
    return events_pb2.StateChanged(
        state=Job.State.Name(state),
        state_value=job_state_pb2.JobState.ValueType(state),
        error=error,
    )
