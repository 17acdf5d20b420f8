"""Which replica serves a key, as Envoy saw it: one request per key, each with a traceparent of
its own, then Envoy's access log (one JSON line per request: `traceparent`, `upstream_host`)
says where each went. Envoy forwards traceparent untouched (no tracer configured), and its
upstream_host is the replica that answered, after any retry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

from switchboard.api.inference.v1 import inference_pb2, inference_pb2_grpc
from switchboard.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from switchboard.launcher import envoy

# Sends one request about `key` carrying `traceparent`; returns what the caller got (an HTTP
# status or a gRPC code name), so a probe also proves that a replica, not Envoy, answered.
Send = Callable[[str, str], Awaitable[str]]
CONCURRENCY = 32
LOG_WAIT_S = 15.0
ENVOY_READY_S = 30.0


@dataclass(frozen=True)
class Served:
    port: int
    answer: str


def edge_sender(public: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """GET /v1/jobs/{key} without a key: the edge that the job id hashes to answers 401."""
    client = httpx.AsyncClient(base_url=public, timeout=20.0)

    async def send(key: str, traceparent: str) -> str:
        reply = await client.get(f"/v1/jobs/{key}", headers={"traceparent": traceparent})
        return str(reply.status_code)

    return send, client.aclose


def planner_sender(target: str, token: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """GetJob of an unknown job, hashed on x-job-id: the planner answers NOT_FOUND."""
    channel = grpc.aio.insecure_channel(target)
    stub = jobs_pb2_grpc.JobServiceStub(channel)

    async def send(key: str, traceparent: str) -> str:
        metadata = (
            ("x-job-id", key),
            ("x-client-id", "dev"),
            ("x-switchboard-internal", token),
            ("traceparent", traceparent),
        )
        try:
            await stub.GetJob(jobs_pb2.GetJobRequest(name=f"jobs/{key}"), metadata=metadata)
        except grpc.aio.AioRpcError as e:
            return e.code().name
        return "OK"

    async def close() -> None:
        await channel.close(None)

    return send, close


def inference_sender(target: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """An empty Embed, hashed on x-session-id: the inference replica answers INVALID_ARGUMENT
    (validation comes first, so no model runs)."""
    channel = grpc.aio.insecure_channel(target)
    stub = inference_pb2_grpc.InferenceServiceStub(channel)

    async def send(key: str, traceparent: str) -> str:
        metadata = (("x-session-id", key), ("traceparent", traceparent))
        try:
            await stub.Embed(inference_pb2.EmbedRequest(), metadata=metadata)
        except grpc.aio.AioRpcError as e:
            return e.code().name
        return "OK"

    async def close() -> None:
        await channel.close(None)

    return send, close


@dataclass(frozen=True)
class Sent:
    """Probes sent and answered; where each went is in the access log."""

    traces: dict[str, str]  # key -> trace id
    answers: dict[str, str]

    async def served(self, access_log: Path) -> dict[str, Served]:
        """Each key's replica (its port) and answer."""
        hosts = await _logged_hosts(access_log, set(self.traces.values()))
        return {
            key: Served(int(hosts[trace].rpartition(":")[2]), self.answers[key])
            for key, trace in self.traces.items()
        }


async def send_all(send: Send, keys: Sequence[str]) -> Sent:
    run = secrets.token_hex(4)
    traces = {key: f"{run}{n:024x}" for n, key in enumerate(keys)}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(key: str) -> str:
        async with gate:
            return await send(key, f"00-{traces[key]}-{secrets.token_hex(8)}-01")

    answers = await asyncio.gather(*(one(key) for key in keys))
    return Sent(traces, dict(zip(keys, answers, strict=True)))


async def served_by(send: Send, keys: Sequence[str], access_log: Path) -> dict[str, Served]:
    """Each key's replica (its port) and answer."""
    return await (await send_all(send, keys)).served(access_log)


async def _logged_hosts(access_log: Path, traces: set[str]) -> dict[str, str]:
    """trace id -> upstream_host, once the access log holds every trace (Envoy writes an
    entry when its stream ends)."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        text = await asyncio.to_thread(access_log.read_text, errors="replace")
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                parent = str(entry.get("traceparent", "")) if isinstance(entry, dict) else ""
                trace = parent[3:35]
                if trace in traces:
                    found[trace] = str(entry.get("upstream_host", ""))
        if len(found) == len(traces):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(traces) - len(found)} probes not in {access_log}")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class SideEnvoy:
    ports: envoy.EnvoyPorts
    access_log: Path

    @property
    def public(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"


@contextlib.asynccontextmanager
async def side_envoy(
    workdir: Path,
    ports: envoy.EnvoyPorts,
    *,
    edges: Sequence[int],
    planners: Sequence[int],
    inferences: Sequence[int],
) -> AsyncIterator[SideEnvoy]:
    """An Envoy of the stack's own configuration with the given members, once every member
    passed its health check (before that, the hash would spread over fewer replicas)."""
    rendered = envoy.render_config(ports, edges=edges, planners=planners, inferences=inferences)
    config, log = _write(workdir, rendered)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *envoy.command(config), stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        await _until_healthy(ports.admin, len(edges) + len(planners) + len(inferences), proc)
        yield SideEnvoy(ports, log)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


def _write(workdir: Path, config: str) -> tuple[Path, Path]:
    """The rendered bootstrap's path and the access log's, in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "envoy.yaml"
    path.write_text(config)
    return path, workdir / "envoy.log"


async def _until_healthy(admin: int, hosts: int, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + ENVOY_READY_S
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}", timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"side Envoy exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                clusters = (await client.get("/clusters")).text
                if clusters.count("::health_flags::healthy") == hosts:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"side Envoy's {hosts} upstream hosts not healthy in {ENVOY_READY_S}s")
