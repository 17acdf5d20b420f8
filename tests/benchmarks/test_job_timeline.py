"""The job timeline's readings: history events, service log lines and logged events as named
times, and the per-step summary over runs."""

from __future__ import annotations

import json

from google.protobuf import timestamp_pb2
from temporalio.api.history.v1 import (
    HistoryEvent,
    MarkerRecordedEventAttributes,
    WorkflowTaskScheduledEventAttributes,
    WorkflowTaskStartedEventAttributes,
)

from benchmarks.job_timeline import event_marks, history_marks, log_marks, summary
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common import jobstates

Job = jobs_pb2.Job


def _at(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def test_history_events_are_named_by_kind_and_repeats_numbered() -> None:
    events = [
        HistoryEvent(
            event_time=_at(10.0),
            workflow_task_scheduled_event_attributes=WorkflowTaskScheduledEventAttributes(),
        ),
        HistoryEvent(
            event_time=_at(10.5),
            workflow_task_started_event_attributes=WorkflowTaskStartedEventAttributes(),
        ),
        HistoryEvent(
            event_time=_at(11.0), marker_recorded_event_attributes=MarkerRecordedEventAttributes()
        ),
        HistoryEvent(
            event_time=_at(11.25), marker_recorded_event_attributes=MarkerRecordedEventAttributes()
        ),
    ]

    assert history_marks(events) == {
        "temporal: workflow task scheduled": 10.0,
        "temporal: workflow task started": 10.5,
        "temporal: marker recorded": 11.0,
        "temporal: marker recorded #2": 11.25,
    }


def test_log_lines_of_the_job_give_each_message_its_first_time() -> None:
    lines = [
        json.dumps({"ts": 5.0, "msg": "generation started", "job_id": "j-other"}),
        "not json, but naming j-1",
        json.dumps({"ts": 6.0, "msg": "generation started", "job_id": "j-1"}),
        json.dumps({"ts": 7.0, "msg": "generation started", "job_id": "j-1"}),
        json.dumps({"ts": 8.0, "msg": "generation finished", "job_id": "j-1"}),
        json.dumps({"ts": 9.0, "msg": "mentions j-1 elsewhere", "job_id": "j-10"}),
    ]

    assert log_marks("worker", lines, "j-1") == {
        "worker: generation started": 6.0,
        "worker: generation finished": 8.0,
    }


def test_logged_states_and_the_first_token_carry_their_own_times() -> None:
    def changed(state: Job.State.ValueType, at: float) -> events_pb2.JobEvent:
        return events_pb2.JobEvent(
            create_time=_at(at), state_changed=jobstates.state_changed(state)
        )

    def token(at: float) -> events_pb2.JobEvent:
        return events_pb2.JobEvent(create_time=_at(at), token=events_pb2.TokenDelta(text="t"))

    events = [
        changed(Job.QUEUED, 1.0),
        changed(Job.RUNNING, 2.0),
        token(3.0),
        token(4.0),
        changed(Job.SUCCEEDED, 5.0),
    ]

    assert event_marks(events) == {
        "log: QUEUED": 1.0,
        "log: RUNNING": 2.0,
        "log: first token stamped": 3.0,
        "log: SUCCEEDED": 5.0,
    }


def test_summary_is_ms_after_each_runs_start_ordered_by_p50() -> None:
    runs = [
        {"b": 10.020, "a": 10.030},
        {"b": 20.040, "a": 20.010, "c": 20.050},
    ]

    rows = summary(runs, [10.0, 20.0])

    assert [row["step"] for row in rows] == ["a", "b", "c"]
    a, b, c = rows
    assert (a["min_ms"], a["max_ms"], a["runs"]) == (10.0, 30.0, 2)
    assert (b["min_ms"], b["max_ms"], b["runs"]) == (20.0, 40.0, 2)
    assert (c["p50_ms"], c["runs"]) == (50.0, 1)
