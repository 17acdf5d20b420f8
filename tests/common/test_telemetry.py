from __future__ import annotations

import json
import logging

from opentelemetry import trace

from switchboard.common import telemetry

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, None, None)


def test_incoming_traceparent_continues_into_logs_and_outgoing_calls() -> None:
    telemetry.setup("test")
    formatter = telemetry.JsonFormatter("test")
    headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    token = telemetry.job_id_var.set("j-123")
    try:
        with telemetry.incoming_span("op", headers):
            entry = json.loads(formatter.format(_record("hello")))
            outgoing = dict(telemetry.trace_metadata())
    finally:
        telemetry.job_id_var.reset(token)
    assert entry["trace_id"] == TRACE_ID
    assert entry["job_id"] == "j-123"
    assert entry["msg"] == "hello" and entry["service"] == "test"
    assert outgoing["traceparent"].split("-")[1] == TRACE_ID
    assert not trace.get_current_span().get_span_context().is_valid


def test_log_without_trace_has_no_trace_fields() -> None:
    entry = json.loads(telemetry.JsonFormatter("svc").format(_record("plain")))
    assert "trace_id" not in entry and "job_id" not in entry
