"""`up --with tracing`: Phoenix in the stack, the services pointed at it, and
`switchboard trace <job>` reading a job's span tree back from a real Phoenix."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from switchboard import cli
from switchboard.common import telemetry, tracing
from switchboard.launcher import receiver, stack, tracecli
from switchboard.launcher.ports import Ports, free_block
from switchboard.launcher.replicas import Replicas
from tests.common.otlp import install_phoenix
from tests.stack import start_stack

OTEL = "OTEL_EXPORTER_OTLP_ENDPOINT"


def test_with_tracing_points_the_python_services_at_phoenix(tmp_path: Path) -> None:
    ports = Ports.at(18000)
    replicas = Replicas(planner=2, worker=2, inference=2)
    specs = stack.build(ports, tmp_path, {}, replicas=replicas)
    environ = {"SWITCHBOARD_PHOENIX": "/opt/phoenix/bin/phoenix"}
    traced = {s.name: s for s in receiver.with_receiver(specs, ports, tmp_path, environ)}
    first = receiver.with_receiver(specs, ports, tmp_path, environ)[0]
    assert first.name == "tracing" and first.argv() == ["/opt/phoenix/bin/phoenix", "serve"]
    assert first.env["PHOENIX_GRPC_PORT"] == str(ports.trace_otlp)
    assert first.env["PHOENIX_PORT"] == str(ports.trace_ui)
    exporting = {name for name, spec in traced.items() if OTEL in spec.env}
    assert exporting == {
        *("edge", "edge-2", "planner", "planner-2", "worker", "worker-2"),
        *("inference", "inference-2"),
    }
    assert traced["worker-2"].env[OTEL] == f"http://127.0.0.1:{ports.trace_otlp}"
    assert OTEL not in traced["triton"].env and OTEL not in traced["temporal"].env


def test_an_unknown_extra_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["up", "--with", "tracing,grafana"])
    assert exit_.value.code == 2
    assert "unknown extra 'grafana'" in capsys.readouterr().err


def test_temporal_serves_its_web_ui(tmp_path: Path) -> None:
    ports = Ports.at(18000)
    temporal = {s.name: s for s in stack.build(ports, tmp_path, {})}["temporal"]
    argv = temporal.argv()
    assert "--headless" not in argv
    assert argv[argv.index("--ui-port") + 1] == str(ports.temporal_ui)
    assert ports.temporal_ui in temporal.ports
    assert receiver.addresses(ports, ["temporal"]) == [
        ("Temporal UI", f"http://127.0.0.1:{ports.temporal_ui}")
    ]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    install_phoenix()
    ports = free_block()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWITCHBOARD_WITH", "tracing")
        proc = start_stack(tmp_path_factory.mktemp("phoenix"), ports, only=("tracing",))
    try:
        yield ports
    finally:
        proc.stop()


def _export_job_trace(ports: Ports, job: str) -> tuple[str, list[str]]:
    """A root span, a child that works for `job`, its child, and a trace of another job;
    returns the job's trace id and its span ids, root first."""
    provider = TracerProvider()
    provider.add_span_processor(tracing.ProcessAttributes("probe", telemetry.current_ids))
    exporter = OTLPSpanExporter(endpoint=receiver.otlp_endpoint(ports), insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("probe")
    with tracer.start_as_current_span("POST /v1/jobs") as root:
        token = telemetry.job_id_var.set(job)
        try:
            with tracer.start_as_current_span("CreateJob") as child:
                time.sleep(0.01)
                with tracer.start_as_current_span("SET") as grandchild:
                    pass
        finally:
            telemetry.job_id_var.reset(token)
    other = telemetry.job_id_var.set(f"{job}-other")
    try:
        with tracer.start_as_current_span("unrelated"):
            pass
    finally:
        telemetry.job_id_var.reset(other)
    provider.shutdown()
    ids = [format(s.get_span_context().span_id, "016x") for s in (root, child, grandchild)]
    return format(root.get_span_context().trace_id, "032x"), ids


def test_trace_prints_the_jobs_span_tree_from_phoenix(
    phoenix: Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    job = f"job-{time.time_ns()}"
    trace_id, (root, child, grandchild) = _export_job_trace(phoenix, job)
    base = receiver.ui_url(phoenix)
    deadline = time.monotonic() + 30
    while True:
        try:
            with httpx.Client(base_url=base) as client:
                (spans,) = tracecli.job_traces(client, receiver.PHOENIX_PROJECT, job)
            if len(spans) == 3:
                break
        except tracecli.TraceError:
            pass
        assert time.monotonic() < deadline, "Phoenix never showed the job's spans"
        time.sleep(0.5)
    assert {s.trace_id for s in spans} == {trace_id}
    (top,) = tracecli.tree(spans)
    assert (top.span_id, top.name, top.service) == (root, "POST /v1/jobs", "probe")
    assert [c.span_id for c in top.children] == [child]
    assert [g.span_id for g in top.children[0].children] == [grandchild]
    assert cli.main(["trace", job, "--receiver", base]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert trace_id in lines[0] and "3 spans" in lines[0]
    # Indentation grows with depth: the root, its child, then the grandchild.
    depth = [next(i for i, ch in enumerate(line) if ch.isalpha()) for line in lines[1:4]]
    assert [line.split()[-4] for line in lines[1:4]] == ["/v1/jobs", "CreateJob", "SET"]
    assert depth[0] < depth[1] < depth[2]
    assert cli.main(["trace", "no-such-job", "--receiver", base]) == 1
    assert "no span of job 'no-such-job'" in capsys.readouterr().err
    assert not trace.get_current_span().get_span_context().is_valid
