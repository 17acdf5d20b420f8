"""The worker process: the activities JobWorkflow schedules, the clients they use, the
interceptors that decide their retries and heartbeats, and the worker that runs them."""
