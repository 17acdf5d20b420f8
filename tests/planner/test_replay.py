"""Recorded JobWorkflow histories replay against today's workflow code: a change that alters
the workflow's commands for histories already running in production fails here.

The histories in `histories/` come from real runs (`scripts/record_histories.py`); a
deliberate, versioned change of the workflow re-records them. No server is needed to replay.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from switchboard.planner.flows.workflow import JobWorkflow
from switchboard.planner.shared.tasks import WORKFLOW

with workflow.unsafe.imports_passed_through():
    from switchboard.api.jobs.v1 import jobs_pb2

HISTORIES = Path(__file__).parent / "histories"
# Representative ends a change must keep replaying; the recording script writes these. The
# first five predate the events-before-state patch (the old order must still replay).
EXPECTED = {"succeeded", "failed", "retried", "cancelled", "webhook_forbidden"} | {
    "fan_out",
    "fan_out_cancelled",
    "graph",
    "graph_failed",
    "webhook_refused",  # since the webhook-delivery-status patch
    "chat",
    "ingest_document",
}
# Since the local-events patch (events appended by local activities): every run again, and
# the embeds (recorded before local-embed, to prove that its patch keeps them replaying).
EMBEDS = {"embed", "embed_failed", "graph_embed"}
LOCAL_EVENTS = {f"{name}_local_events" for name in EXPECTED | EMBEDS}
# Since the local-embed patch (an Embed call as a local activity): the runs that embed.
LOCAL_EMBED = {f"{name}_local_embed" for name in EMBEDS}


def _history(path: Path) -> WorkflowHistory:
    # The workflow id is not in the history's events; any id replays.
    return WorkflowHistory.from_json(f"replay/{path.stem}", path.read_text())


def _replayer(workflow_class: type) -> Replayer:
    # The interceptor the worker runs with (process.connect_temporal), so replay matches. The
    # full sandbox, not the worker's (which passes `flows` through, see worker.py): a call
    # the sandbox refuses anywhere in the recorded paths fails here.
    return Replayer(workflows=[workflow_class], interceptors=[TracingInterceptor()])


def test_the_recorded_histories_are_all_there() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= EXPECTED | LOCAL_EVENTS | LOCAL_EMBED


@pytest.mark.asyncio
@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays_deterministically(path: Path) -> None:
    result = await _replayer(JobWorkflow).replay_workflow(
        _history(path), raise_on_replay_failure=False
    )
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


@workflow.defn(name=WORKFLOW)
class _SkipsRunning:
    """JobWorkflow as a careless change might leave it: straight to SUCCEEDED."""

    @workflow.run
    async def run(self, job: jobs_pb2.Job) -> jobs_pb2.Job:
        return job


@pytest.mark.asyncio
async def test_a_changed_workflow_fails_replay() -> None:
    result = await _replayer(_SkipsRunning).replay_workflow(
        _history(HISTORIES / "succeeded.json"), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError)


@workflow.defn(name=WORKFLOW)
class _ReadsTheClock:
    """JobWorkflow as it must never be: the wall clock instead of `workflow.now()`."""

    @workflow.run
    async def run(self, job: jobs_pb2.Job) -> jobs_pb2.Job:
        job.update_time.FromDatetime(datetime.now())
        return job


@pytest.mark.asyncio
async def test_a_non_deterministic_call_fails_replay_under_the_full_sandbox() -> None:
    result = await _replayer(_ReadsTheClock).replay_workflow(
        _history(HISTORIES / "succeeded_local_events.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert "datetime" in str(result.replay_failure)
