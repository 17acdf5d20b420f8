"""Runs the planner's Temporal worker (JobWorkflow and its activities).

The entry point the launcher and the images name (`python -m switchboard.planner.worker`),
beside `python -m switchboard.planner` for the server; the worker itself is `work.worker`.
"""

from switchboard.planner.work.worker import main

if __name__ == "__main__":
    main()
