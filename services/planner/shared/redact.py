"""The job as the planner stores and shows it: without the document an ingest job carries.

The memo of every workflow holds its Job, and `ListJobs` reads 20 memos a page: 20 documents
of up to 1 MiB each would pass gRPC's message limits and Temporal's memo limit. So the memo,
the `snapshot` query, the workflow's result and CreateJob's answer hold the job with the
document's content cleared (no view echoes a document back); the workflow's own input keeps
it for the `extract_document` activity.
"""

from __future__ import annotations

from temporalio import workflow

# The workflow uses this module too: its messages must be the ones the workflow passes through.
with workflow.unsafe.imports_passed_through():
    from switchboard.api.jobs.v1 import jobs_pb2


def stored_view(job: jobs_pb2.Job) -> jobs_pb2.Job:
    """A copy of the job without the content of an ingest job's document."""
    view = jobs_pb2.Job()
    view.CopyFrom(job)
    if view.input.HasField("ingest_document"):
        # The oneof is cleared, but the Document stays set (an empty one), as it was sent.
        view.input.ingest_document.document.Clear()
        view.input.ingest_document.document.SetInParent()
    return view
