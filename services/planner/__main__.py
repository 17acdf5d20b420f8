"""Runs the planner's gRPC server (JobService)."""

from switchboard.planner.server import main

main()
