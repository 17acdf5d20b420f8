"""The planner's gRPC server process: JobService, its job store over Temporal, paging and
the pipeline catalog. It starts workflows and reads them; it never runs one."""
