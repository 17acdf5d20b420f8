"""Runs the planner's gRPC server (JobService); the server itself is `api.server`."""

from switchboard.planner.api.server import main

main()
