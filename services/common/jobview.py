"""A SUCCEEDED job as its log tells it, before the workflow shows it.

The planner's workflow stores each state change in the job's event log before it shows it
(GetJob's memo), and logs the job's `result` just before its SUCCEEDED state change. So a
reader that has those two events and the job as last shown (its memo, or the job as
CreateJob answered it) has the job as it ended: the view with the result, SUCCEEDED and the
state change's time as `update_time` applied, and for a job with a webhook its delivery
PENDING, as the workflow sets it with the end. The planner's GetJob answers from this between
the logged end and the memo's catching up; the edge answers `Prefer: wait` from it without a
GetJob. A planner test checks it against the view the workflow then shows.

FAILED and CANCELLED ends may keep what the log does not hold (a failed graph's finished
stages), so they are read back from the planner instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2

Job = jobs_pb2.Job
SUCCEEDED = Job.State.Name(Job.SUCCEEDED)


def succeeded_view(shown: Job, ending: Sequence[events_pb2.JobEvent]) -> Job | None:
    """The view `shown` with a logged SUCCEEDED end applied; None for any other end, or when
    the result is not among `ending` (the log's last events up to its end, newest first)."""
    if not ending or ending[0].state_changed.state != SUCCEEDED:
        return None
    result = next((e.result for e in ending[1:] if e.HasField("result")), None)
    if result is None:
        return None
    job = Job()
    job.CopyFrom(shown)
    job.state = Job.SUCCEEDED
    job.update_time.CopyFrom(ending[0].create_time)
    job.result.CopyFrom(result)
    if job.webhook_url:
        job.webhook_delivery.state = events_pb2.WebhookDelivery.PENDING
    return job
