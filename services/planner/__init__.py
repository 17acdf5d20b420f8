"""The planner: JobService over Temporal workflows, with job events kept in Valkey streams."""
