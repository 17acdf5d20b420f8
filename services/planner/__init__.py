"""The planner: JobService over Temporal workflows, with job events kept in Valkey streams.

Its code is grouped by where it runs (docs/planner.md, and contracts in pyproject.toml):

- `api`: the gRPC server process (JobService): servicer, job store over Temporal, paging,
  the pipeline catalog. Entry point: `python -m switchboard.planner`.
- `flows`: the workflow, inside Temporal's sandbox: deterministic, no I/O. The pipelines
  there see the job only through the `flows.context.JobContext` protocol.
- `work`: the worker process: activities and the clients they use (inference, documents,
  vectors, webhooks, generation records), outage and heartbeat interceptors, the worker.
  Entry point: `python -m switchboard.planner.worker`.
- `stores`: the Valkey stores both processes open: the job event log (and its read hub), the
  chat sessions.
- `shared`: pure code both sides use: ids, errors, settings, stage-graph checks, the names
  and task types of the workflow and its activities, the terminal states.
- `process`: the connections and signal handling both entry points share.
"""
