"""The keys the mesh hashes on, so that one job, or one chat session, stays on one replica.

One source for the code that sends them (the edge, the planner's activities), the local
Envoy bootstrap (mesh/envoy/envoy.yaml, filled in by switchboard.launcher.envoy) and the
tests of the Istio resources (mesh/istio/): the two meshes cannot hash on a key the code
does not send. Hashing is for efficiency only; any replica serves any key correctly.
"""

from __future__ import annotations

from typing import Final

# gRPC metadata on every call about one job: JobService calls hash on it to the planner
# replica that holds the job's WatchJob reader.
JOB_ID_HEADER: Final = "x-job-id"

# A chat session's key: the front door hashes /v1/chat/ on it to one edge, and
# InferenceService calls hash on it to the inference replica that holds the session's state.
SESSION_ID_HEADER: Final = "x-session-id"

# The front door has no job-id header to hash on, so it hashes the request path rewritten
# down to the job id: /v1/jobs/abc/events?x=1 hashes as "abc"; a path that does not match
# is left whole. RE2 syntax (Envoy's regex engine), used as a regex_rewrite of ":path" by the
# local Envoy and by the Istio gateway's EnvoyFilter. It holds no quote and no backslash, so
# it drops into a single-quoted YAML scalar as is.
JOB_ID_PATH_REGEX: Final = "^/v1/jobs/([^/?#]+).*$"
JOB_ID_PATH_SUBSTITUTION: Final = "\\1"
