"""One builder for the metadata of internal calls (the edge and switchboard.client use it)."""

from __future__ import annotations

from switchboard.common import telemetry
from switchboard.common.callmetadata import call_metadata, identity

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def test_identity_sends_what_is_set_and_leaves_out_what_is_empty() -> None:
    assert identity("c1", internal_token="tok", job_id="j1", session_id="s1") == (
        ("x-client-id", "c1"),
        ("x-switchboard-internal", "tok"),
        ("x-job-id", "j1"),
        ("x-session-id", "s1"),
    )
    # An edge without an internal token sends no empty header the planner would read as one.
    assert identity(internal_token="") == ()
    assert dict(identity("c1", job_id="j1")) == {"x-client-id": "c1", "x-job-id": "j1"}


def test_call_metadata_continues_the_current_trace() -> None:
    telemetry.setup("test")
    headers = {"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"}
    with telemetry.incoming_span("op", headers):
        sent = dict(call_metadata("c1", session_id="s1"))
    assert sent["traceparent"].split("-")[1] == TRACE_ID
    assert (sent["x-client-id"], sent["x-session-id"]) == ("c1", "s1")
    assert "x-switchboard-internal" not in sent and "x-job-id" not in sent
    assert "traceparent" not in dict(call_metadata("c1"))  # no span: nothing to continue
