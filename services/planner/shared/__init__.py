"""Pure code the planner's server, workflow and worker all use: job ids, the planner's
errors, settings, stage-graph checks, what a stored job shows, the names and task types of
the workflow and its activities, and the terminal states. No I/O."""
