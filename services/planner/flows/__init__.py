"""The workflow side: JobWorkflow and its pipelines, run inside Temporal's sandbox.

Deterministic and without I/O: everything that touches the world is an activity (`work`).
The pipelines (chat, documents, stages) receive a `context.JobContext`, which JobWorkflow
implements; they never import the workflow class.
"""
