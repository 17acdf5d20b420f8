"""Span export: a process set up as main() does sends its spans over OTLP to a real receiver,
with client spans for gRPC, httpx and Valkey linked under the span that made the calls."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.common import telemetry, tracing
from switchboard.launcher.ports import free_block
from tests.common.otlp import attributes, receiving
from tests.stack import free_ports, start_stack

CLIENT = trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
SERVER = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER


@pytest.fixture(scope="module")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ports = free_block()
    proc = start_stack(tmp_path_factory.mktemp("valkey"), ports, only=("valkey",))
    try:
        yield f"valkey://127.0.0.1:{ports.valkey}/0"
    finally:
        proc.stop()


@pytest.mark.asyncio
async def test_every_client_call_is_exported_under_its_caller(valkey_url: str) -> None:
    async with receiving() as receiver:
        env = {**os.environ, tracing.ENDPOINT_ENV: receiver.address}
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.common.tracing_probe",
            str(free_ports(1)[0]),
            valkey_url,
            env=env,
            cwd=Path(__file__).parents[2],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert probe.stdin is not None and probe.stdout is not None
        assert await asyncio.wait_for(probe.stdout.readline(), 60) == b"flushed\n"
        # Exported while the process runs: a span that ends only at exit is not there yet.
        exported_live = list(receiver.spans)
        probe.stdin.write(b"\n")
        assert await asyncio.wait_for(probe.wait(), 60) == 0
    root = receiver.named("probe-root")
    grpc_client = receiver.named("/grpc.health.v1.Health/Check", CLIENT)
    grpc_server = receiver.named("/grpc.health.v1.Health/Check", SERVER)
    chat_client = receiver.named("/probe.Echo/Chat", CLIENT)
    chat_server = receiver.named("/probe.Echo/Chat", SERVER)
    watch = receiver.named("/probe.Echo/Ticks", CLIENT)
    http = receiver.named("GET")
    command = receiver.named("SET")
    transaction = receiver.named("MULTI 2")
    assert grpc_client.parent_span_id == root.span_id
    # The server continued the trace the client interceptor injected: one tree, not two.
    assert grpc_server.parent_span_id == grpc_client.span_id
    # A bidirectional call read with read(), never exhausted, still ends and exports its span.
    assert chat_client in exported_live
    assert chat_client.parent_span_id == root.span_id
    assert chat_server.parent_span_id == chat_client.span_id
    assert attributes(chat_client)["rpc.method"] == "Chat"
    # So does a response stream left with cancel() after a read().
    assert watch in exported_live and watch.parent_span_id == root.span_id
    assert watch.status.code == trace_pb2.Status.StatusCode.STATUS_CODE_ERROR
    for child in (http, command, transaction):
        assert child.kind == CLIENT and child.parent_span_id == root.span_id
    assert attributes(command)["db.system.name"] == "valkey"
    assert {span.trace_id for span in receiver.spans} == {root.trace_id}
    for span in receiver.spans:
        assert attributes(span)[tracing.SERVICE_ATTRIBUTE] == "probe"
    assert attributes(http)[tracing.JOB_ATTRIBUTE] == "job-probe"
    assert tracing.JOB_ATTRIBUTE not in attributes(root)  # set only after the root began


def test_no_endpoint_no_instrumentation() -> None:
    telemetry.setup("quiet", environ={})
    assert tracing.instrumented() == ()
    assert not tracing.exporting({tracing.ENDPOINT_ENV: " "})


def test_spans_carry_the_service_and_the_current_job() -> None:
    provider = TracerProvider()
    provider.add_span_processor(tracing.ProcessAttributes("edge", telemetry.current_ids))
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("before"):
        pass
    job = telemetry.job_id_var.set("j-7")
    client = telemetry.client_id_var.set("acme")
    try:
        with tracer.start_as_current_span("during"):
            pass
    finally:
        telemetry.job_id_var.reset(job)
        telemetry.client_id_var.reset(client)
    before, during = exported.get_finished_spans()
    assert before.attributes == {tracing.SERVICE_ATTRIBUTE: "edge"}
    assert during.attributes == {
        tracing.SERVICE_ATTRIBUTE: "edge",
        tracing.JOB_ATTRIBUTE: "j-7",
        tracing.CLIENT_ATTRIBUTE: "acme",
    }
