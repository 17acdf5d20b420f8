"""The local mesh: starting, watching and stopping every process of a stack."""

import os

# The supervisor asks children over gRPC (health checks) while it forks new ones; gRPC's
# fork handlers then run in the child between fork and exec and can abort it (seen: the
# planner died with SIGABRT, "epoll_wait error: Bad file descriptor"). Must be set before
# gRPC initialises, hence here, before any submodule imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
