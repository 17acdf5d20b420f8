"""A real OTLP/gRPC trace receiver for tests, keeping every span it is sent; and Phoenix."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass
class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    spans: list[trace_pb2.Span] = field(default_factory=list)
    address: str = ""

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, name: str, kind: int | None = None) -> trace_pb2.Span:
        matches = [s for s in self.spans if s.name == name and kind in (None, s.kind)]
        assert len(matches) == 1, (name, sorted(span.name for span in self.spans))
        return matches[0]


def attributes(span: trace_pb2.Span) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in span.attributes}


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    receiver.address = f"http://127.0.0.1:{port}"
    await server.start()
    try:
        yield receiver
    finally:
        await server.stop(None)


def install_phoenix() -> None:
    """The trace receiver the stack runs with `--with tracing`, installed as a developer
    would (scripts/setup-tracing; a no-op once done): the tests that need it install it
    rather than skip."""
    script = Path(__file__).parents[2] / "scripts" / "setup-tracing"
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr
