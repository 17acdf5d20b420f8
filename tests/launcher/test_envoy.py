"""Envoy in front of stand-in replicas.

The rendered bootstrap must pass Envoy's own validation, and on the wire every request about
one job must reach one edge replica (and one planner per x-job-id, one inference replica per
x-session-id) while different keys spread over all replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from switchboard.launcher.envoy import DEFAULT_TEMPLATE, EnvoyPorts, command, render_config

JOBS = "switchboard.jobs.v1.JobService"
INFERENCE = "switchboard.inference.v1.InferenceService"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# Envoy itself is ready in well under a second; the margin is for a loaded CI machine.
START_TIMEOUT = 20.0
JOB_PATHS = ("/v1/jobs/{}", "/v1/jobs/{}/events", "/v1/jobs/{}/result?x=1")
# What a stand-in edge reports having received: a client's own must never arrive.
IDENTITY_HEADERS = ("traceparent", "x-client-id", "x-switchboard-internal")


# --- helpers -------------------------------------------------------------------------------


async def _until(check: Callable[[], Awaitable[bool]], *, what: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def _envoy_ports() -> EnvoyPorts:
    # Held open together so the kernel cannot hand the same free port out twice.
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(3)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        public, grpc_port, admin = (sock.getsockname()[1] for sock in socks)
    return EnvoyPorts(public=public, grpc=grpc_port, admin=admin)


def _edge_app(name: str) -> Starlette:
    """A stand-in edge replica: says who it is and what traceparent reached it."""

    def identity(request: Request) -> dict[str, str]:
        seen = {f"x-seen-{h}": request.headers.get(h, "") for h in IDENTITY_HEADERS}
        return {"x-upstream": name, **seen}

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            for n in range(3):
                yield f"id: {n}\ndata: {name}\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers=identity(request)
        )

    async def anything(request: Request) -> Response:
        return PlainTextResponse(name, headers=identity(request))

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/jobs/{job_id}/events", events),
            Route("/{path:path}", anything),
        ]
    )


@contextlib.asynccontextmanager
async def _edge_replica(name: str) -> AsyncIterator[int]:
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and with proto 0 every response stalls ~40 ms on Nagle plus delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _edge_app(name),
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        if task.done():
            task.result()  # a crash during start-up surfaces here
            pytest.fail(f"{name} exited during start-up")
        return server.started

    try:
        await _until(started, what=f"{name} to start", within=START_TIMEOUT)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


def _service_handler(name: str, service: str) -> grpc.GenericRpcHandler[bytes, bytes]:
    """Raw-bytes methods on the real service name, so only the prefix routing is exercised."""

    async def whoami(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return name.encode()

    async def echo(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for message in requests:
            yield name.encode() + b":" + message

    return grpc.method_handlers_generic_handler(
        service,
        {
            "Whoami": grpc.unary_unary_rpc_method_handler(whoami),
            "Echo": grpc.stream_stream_rpc_method_handler(echo),
        },
    )


@contextlib.asynccontextmanager
async def _grpc_replica(name: str, service: str) -> AsyncIterator[int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_service_handler(name, service),))
    # The aio servicer is grpc_health's own API; the stubs predate it.
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [service, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


def _write_config(config: str, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "envoy.yaml"
    path.write_text(config, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Envoy:
    ports: EnvoyPorts
    process: asyncio.subprocess.Process
    stdout: Path
    stderr: Path

    def admin(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports.admin}{path}"

    def died(self) -> str:
        return f"envoy exited with {self.process.returncode}:\n{self.stderr.read_text()}"


@contextlib.asynccontextmanager
async def _envoy(ports: EnvoyPorts, config: str, workdir: Path) -> AsyncIterator[Envoy]:
    config_path = _write_config(config, workdir)
    stdout, stderr = workdir / "envoy.stdout", workdir / "envoy.stderr"
    # Files, not pipes: nobody reads a pipe while the test runs, and a full one stalls Envoy.
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            *command(config_path), stdout=out, stderr=err
        )
    try:
        yield Envoy(ports=ports, process=process, stdout=stdout, stderr=stderr)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _admin_get(envoy: Envoy, path: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return await client.get(envoy.admin(path))
    except httpx.TransportError:
        return None  # admin not listening yet


async def _until_ready(envoy: Envoy, *, healthy_hosts: int) -> None:
    """/ready says LIVE and every upstream host has passed its active health check.

    /ready alone is not enough: it turns LIVE after the first round of health checks
    whatever their outcome, with every host still marked failed.
    """

    async def ready() -> bool:
        if envoy.process.returncode is not None:
            pytest.fail(envoy.died())
        live = await _admin_get(envoy, "/ready")
        if live is None or live.text.strip() != "LIVE":
            return False
        clusters = await _admin_get(envoy, "/clusters")
        return clusters is not None and clusters.text.count("::health_flags::healthy") == (
            healthy_hosts
        )

    await _until(ready, what="envoy to be LIVE with healthy upstreams", within=START_TIMEOUT)


async def _access_log_entry(
    envoy: Envoy, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def logged() -> bool:
        for line in envoy.stdout.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict) and match(entry):
                    found.append(entry)
                    return True
        return False

    # Envoy writes the stdout access log as each stream ends; the margin is for a loaded
    # machine.
    await _until(logged, what="the access log entry", within=10)
    return found[0]


# --- the stack -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    envoy: Envoy
    edges: dict[int, str]
    planners: dict[int, str]
    inferences: dict[int, str]

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.envoy.ports.public}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.envoy.ports.grpc}"


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    # Unwinds in reverse: Envoy stops before the replicas behind it.
    async with contextlib.AsyncExitStack() as running:

        async def edge(name: str) -> tuple[int, str]:
            return await running.enter_async_context(_edge_replica(name)), name

        async def grpc_service(name: str, service: str) -> tuple[int, str]:
            return await running.enter_async_context(_grpc_replica(name, service)), name

        edges = dict([await edge("edge-a"), await edge("edge-b")])
        planners = dict([await grpc_service(f"planner-{x}", JOBS) for x in "ab"])
        inferences = dict([await grpc_service(f"inference-{x}", INFERENCE) for x in "ab"])
        ports = _envoy_ports()
        config = render_config(
            ports, edges=list(edges), planners=list(planners), inferences=list(inferences)
        )
        envoy = await running.enter_async_context(_envoy(ports, config, tmp_path / "envoy"))
        await _until_ready(envoy, healthy_hosts=len(edges) + len(planners) + len(inferences))
        yield Stack(envoy=envoy, edges=edges, planners=planners, inferences=inferences)


# --- rendering and validation --------------------------------------------------------------


def _validate(config: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(_write_config(config, workdir)), "--mode", "validate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("edges", "planners", "inferences"),
    [
        pytest.param([8001], [8101], [8201], id="one-of-each"),
        pytest.param([8001, 8002, 8003], [8101, 8102], [8201, 8202], id="replicas"),
        pytest.param([8001], [8101], [], id="no-inference"),
    ],
)
def test_rendered_config_passes_envoy_validation(
    tmp_path: Path, edges: list[int], planners: list[int], inferences: list[int]
) -> None:
    config = render_config(
        EnvoyPorts(public=18000, grpc=18001, admin=18002),
        edges=edges,
        planners=planners,
        inferences=inferences,
    )
    result = _validate(config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_render_fills_every_placeholder() -> None:
    config = render_config(EnvoyPorts(18000, 18001, 18002), edges=[1], planners=[2], inferences=[3])
    assert not re.search(r"\$\{?[a-z_]", config), "a placeholder was left unfilled"
    # Doubled dollars in the template are regex anchors once rendered.
    assert "'^/v1/jobs/([^/?#]+).*$'" in config
    assert '"port_value": 3' in config


def test_default_template_is_the_repos_own() -> None:
    # The package is imported through the switchboard -> services link; the template must
    # still be found in the real repository.
    repo = Path(__file__).resolve().parents[2]
    assert repo / "mesh" / "envoy" / "envoy.yaml" == DEFAULT_TEMPLATE
    assert DEFAULT_TEMPLATE.is_file()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"edges": [0]}, id="port-zero"),
        pytest.param({"edges": [70000]}, id="port-too-big"),
        pytest.param({"edges": [True]}, id="bool"),
        pytest.param({"planners": [8101, 8101]}, id="duplicate-replica"),
    ],
)
def test_render_rejects_bad_replica_ports(bad: dict[str, list[int]]) -> None:
    replicas = {"edges": [8001], "planners": [8101], "inferences": [8201]} | bad
    with pytest.raises(ValueError):
        render_config(
            EnvoyPorts(18000, 18001, 18002),
            edges=replicas["edges"],
            planners=replicas["planners"],
            inferences=replicas["inferences"],
        )


def test_command_disables_hot_restart_unless_given_a_base_id(tmp_path: Path) -> None:
    config = tmp_path / "envoy.yaml"
    default = command(config)
    assert "--disable-hot-restart" in default
    assert "--base-id" not in default
    with_id = command(config, base_id=4242)
    assert with_id[with_id.index("--base-id") + 1] == "4242"
    assert "--disable-hot-restart" not in with_id
    with pytest.raises(ValueError):
        command(config, base_id=-1)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_two_envoys_run_side_by_side(tmp_path: Path) -> None:
    # With Envoy's default base id the second would die on "unable to bind domain socket".
    async with contextlib.AsyncExitStack() as running:
        for name in ("first", "second"):
            ports = _envoy_ports()
            config = render_config(ports, edges=[], planners=[], inferences=[])
            envoy = await running.enter_async_context(_envoy(ports, config, tmp_path / name))
            await _until_ready(envoy, healthy_hosts=0)


# --- on the wire: the public listener ------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_every_request_about_a_job_reaches_one_edge_replica(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.public_url, timeout=10) as client:

        async def replica_for(path: str) -> str:
            response = await client.get(path)
            assert response.status_code == 200, response.text
            return response.headers["x-upstream"]

        repeated = [await replica_for(p.format("abc123")) for p in JOB_PATHS for _ in range(5)]
        assert len(set(repeated)) == 1, repeated

        owners: dict[str, str] = {}
        for n in range(40):
            job = f"job-{n}"
            seen = {await replica_for(p.format(job)) for p in JOB_PATHS}
            assert len(seen) == 1, f"{job} was served by {seen}"
            owners[job] = seen.pop()
    assert set(owners.values()) == set(stack.edges.values()), owners


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_sse_streams_through_with_traceparent_untouched(stack: Stack) -> None:
    headers = {"traceparent": TRACEPARENT, "accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=stack.public_url, timeout=10) as client,
        client.stream("GET", "/v1/jobs/abc123/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-seen-traceparent"] == TRACEPARENT
        body = (await response.aread()).decode()
    replica = response.headers["x-upstream"]
    assert body.count(f"data: {replica}\n\n") == 3

    entry = await _access_log_entry(stack.envoy, lambda e: e.get("traceparent") == TRACEPARENT)
    assert entry["route"] == "job_events"
    assert entry["code"] == 200
    assert entry["path"] == "/v1/jobs/abc123/events"
    assert isinstance(entry["duration_ms"], int)
    port = {name: port for port, name in stack.edges.items()}[replica]
    assert entry["upstream_host"] == f"127.0.0.1:{port}"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_public_listener_strips_client_sent_identity_headers(stack: Stack) -> None:
    forged = {"x-client-id": "victim", "x-switchboard-internal": "guessed"}
    async with httpx.AsyncClient(base_url=stack.public_url, timeout=10) as client:
        for path in ("/v1/jobs", "/v1/jobs/abc123", "/v1/jobs/abc123/events"):
            response = await client.get(path, headers={**forged, "traceparent": TRACEPARENT})
            assert response.status_code == 200, response.text
            assert response.headers["x-seen-x-client-id"] == "", path
            assert response.headers["x-seen-x-switchboard-internal"] == "", path
            # Only those two: other headers still reach the edge.
            assert response.headers["x-seen-traceparent"] == TRACEPARENT, path


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_streams_are_not_cut_by_route_timeouts(stack: Stack) -> None:
    # Read back from Envoy itself: what it parsed, not what the template says.
    dump = await _admin_get(stack.envoy, "/config_dump?resource=static_route_configs")
    assert dump is not None and dump.status_code == 200
    routes = {
        route["name"]: route["route"]
        for config in dump.json()["configs"]
        for host in config["route_config"]["virtual_hosts"]
        for route in host["routes"]
        if "route" in route  # direct responses (the blocked /metrics) have no upstream
    }
    assert routes["job_events"]["timeout"] == "0s"
    assert routes["job_events"]["idle_timeout"] == "3600s"
    assert routes["job"]["timeout"] == "60s"
    for name in ("jobs", "inference", "reflection_v1alpha", "reflection_v1", "health"):
        assert routes[name]["timeout"] == "0s", name


# --- on the wire: the internal gRPC listener -----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_health_and_reflection_reach_the_planner(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([request]), timeout=5
        )
        services = [
            service.name
            async for answer in replies
            for service in answer.list_services_response.service
        ]
    assert JOBS in services


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_job_and_session_ids_stick_to_one_replica(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:

        async def replica_for(service: str, header: str, key: str) -> str:
            whoami = channel.unary_unary(
                f"/{service}/Whoami", request_serializer=None, response_deserializer=None
            )
            reply: bytes = await whoami(b"", metadata=((header, key),), timeout=5)
            return reply.decode()

        for service, header, replicas in (
            (JOBS, "x-job-id", stack.planners),
            (INFERENCE, "x-session-id", stack.inferences),
        ):
            repeated = {await replica_for(service, header, "abc123") for _ in range(10)}
            assert len(repeated) == 1, (service, repeated)
            spread = {await replica_for(service, header, f"key-{n}") for n in range(40)}
            assert spread == set(replicas.values()), (service, spread)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_bidirectional_stream_passes_through(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        echo = channel.stream_stream(
            f"/{INFERENCE}/Echo", request_serializer=None, response_deserializer=None
        )
        # No request iterator: the call is driven with write() and read() instead.
        call = echo(None, metadata=(("x-session-id", "session-1"),), timeout=10)
        replies: list[bytes] = []
        # Lock-step write/read proves messages flow both ways while the stream stays open.
        for word in (b"one", b"two", b"three"):
            await call.write(word)
            reply = await call.read()
            assert isinstance(reply, bytes), reply  # not EOF: the stream is still open
            replies.append(reply)
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    replica = replies[0].split(b":")[0].decode()
    assert replica in stack.inferences.values()
    assert replies == [f"{replica}:{w}".encode() for w in ("one", "two", "three")]


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_unknown_service_is_unimplemented(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            nowhere = channel.unary_unary(
                "/nope.v1.Nowhere/Call", request_serializer=None, response_deserializer=None
            )
            await nowhere(b"", timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
