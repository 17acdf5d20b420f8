"""The two processes as the launcher runs them: `python -m switchboard.planner` and
`python -m switchboard.planner.worker`, configured by environment only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchboard.api.jobs.v1 import jobs_pb2_grpc

from ..stack import free_ports
from .conftest import Infra
from .fake_inference import FakeInference
from .processes import Process, spawn
from .support import create_request, states, watch

READY_S = 30.0
JOB_SERVICE = "switchboard.jobs.v1.JobService"
INFERENCE_SERVICE = "switchboard.inference.v1.InferenceService"


async def _ready(process: Process) -> None:
    """Waits for the process's `"msg": "ready"` log line."""
    async with asyncio.timeout(READY_S):
        while '"msg": "ready"' not in process.log.read_text(errors="replace"):
            assert process.popen.poll() is None, process.tail()
            await asyncio.sleep(0.1)


async def _stopped(process: Process) -> int:
    process.popen.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(process.popen.wait, 15)


def _start(module: str, prefix: str, settings: dict[str, object], log: Path) -> Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update({f"SWITCHBOARD_{prefix}_{k}": str(v) for k, v in settings.items()})
    return spawn(module, [sys.executable, "-m", module], "", log, env)


@pytest.mark.asyncio
async def test_planner_and_worker_processes_serve_a_job_and_stop_on_sigterm(
    infra: Infra,
    inference: tuple[FakeInference, str],
    tmp_path: Path,
) -> None:
    port, planner_metrics, worker_metrics = free_ports(3)
    common = {
        "TEMPORAL_ADDRESS": infra.temporal,
        "VALKEY_URL": f"valkey://{infra.valkey}/0",
        "TASK_QUEUE": f"test-{uuid.uuid4().hex}",
    }
    planner = _start(
        "switchboard.planner",
        "PLANNER",
        {**common, "PORT": port, "METRICS_PORT": planner_metrics, "INTERNAL_TOKENS": "t-0, t-1"},
        tmp_path / "planner.log",
    )
    worker = _start(
        "switchboard.planner.worker",
        "WORKER",
        {**common, "METRICS_PORT": worker_metrics, "INFERENCE_ADDRESS": inference[1]},
        tmp_path / "worker.log",
    )
    try:
        await asyncio.gather(_ready(planner), _ready(worker))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await _check_serving(channel)
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            metadata = (("x-client-id", "process-test"), ("x-switchboard-internal", "t-1"))
            job = await stub.CreateJob(create_request("echo", "x y"), metadata=metadata)
            assert states(await watch(stub, job.name, metadata))[-1] == "SUCCEEDED"
        async with httpx.AsyncClient(timeout=5) as http:
            for metrics_port in (planner_metrics, worker_metrics):
                response = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
                assert response.status_code == 200
        assert await _stopped(planner) == 0, planner.tail()
        assert await _stopped(worker) == 0, worker.tail()
        assert '"msg": "stopped"' in planner.log.read_text()
        assert '"msg": "stopped"' in worker.log.read_text()
        # One trace from the planner's CreateJob to the worker's activity, logged with the job.
        (created,) = _logged(planner, "job created")
        (started,) = _logged(worker, "generation started")
        assert created["trace_id"] == started["trace_id"]
        assert created["job_id"] == started["job_id"] == job.name.removeprefix("jobs/")
    finally:
        planner.stop()
        worker.stop()


def _logged(process: Process, msg: str) -> list[dict[str, object]]:
    text = process.log.read_text(errors="replace").splitlines()
    # Only our JSON lines: gRPC's C core may print its own to stderr.
    lines = [json.loads(line) for line in text if line.startswith("{")]
    return [line for line in lines if line.get("msg") == msg]


async def _check_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", JOB_SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in reflection.ServerReflectionInfo(iter([request])):
        names = {s.name for s in reply.list_services_response.service}
        assert {JOB_SERVICE, INFERENCE_SERVICE} <= names
        break
