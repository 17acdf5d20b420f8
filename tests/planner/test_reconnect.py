"""Dependents recover by themselves: Valkey or Temporal killed (SIGKILL) and started again on
the same port with the same data, as the supervisor does, while the planner and the worker
keep running. A job in flight succeeds, an open WatchJob goes on (a pause with heartbeats)
and its follower sees every stored event exactly once; the attempts that failed meanwhile
are logged once Valkey is back."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.jobref import JobRef
from switchboard.common.jobstates import TERMINAL_STATE_NAMES as TERMINAL_STATES
from switchboard.planner import process
from switchboard.planner.stores import events

from . import restartable
from .conftest import Infra
from .processes import Process, start_worker
from .support import Planner, eventually, running_planner, running_worker, serving, states
from .test_durability import PACED, PacedInference

WORDS = 30  # 3 s of tokens: Valkey dies in the middle
Job = jobs_pb2.Job


def _real(seen: list[events_pb2.JobEvent]) -> list[events_pb2.JobEvent]:
    return [e for e in seen if not e.HasField("heartbeat")]


async def _stored(planner: Planner, name: str) -> list[events_pb2.JobEvent]:
    key = events.stream_key(JobRef.from_name(planner.client_id, name))
    entries = await planner.valkey.xrange(key)
    found = []
    for entry_id, fields in entries:
        event = events_pb2.JobEvent.FromString(fields[b"e"])
        event.cursor = entry_id.decode()
        found.append(event)
    return found


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_valkey_restart_mid_generation_delays_the_job_and_loses_no_event(
    own_valkey: restartable.Restartable, temporal_client: Client
) -> None:
    client = process.valkey_client(f"valkey://{own_valkey.address}/0")
    fake = PacedInference()
    queue = f"test-{uuid.uuid4().hex}"
    prompt = " ".join(f"w{i}" for i in range(WORDS))
    try:
        async with (
            serving(fake) as address,
            running_planner(temporal_client, client, fake, queue) as planner,
            running_worker(temporal_client, client, address, queue),
        ):
            job = await planner.create(model=PACED, prompt=prompt)
            follower = asyncio.create_task(_follow(planner, job.name))

            async def some_tokens() -> bool:
                return sum(e.HasField("token") for e in await _stored(planner, job.name)) >= 5

            await eventually(some_tokens)
            own_valkey.kill()
            await asyncio.sleep(2.0)
            await own_valkey.start()  # same port, same append-only file

            async def ended() -> bool:
                return (await planner.get(job.name)).state in (Job.SUCCEEDED, Job.FAILED)

            await eventually(ended, within_s=60)
            seen = await asyncio.wait_for(follower, 30)
            stored = await _stored(planner, job.name)
            done = await planner.get(job.name)
    finally:
        await client.aclose()

    assert done.state == Job.SUCCEEDED, done.error
    assert done.result.generate.text == prompt
    # The follower's one WatchJob went on across the restart: every stored event, once.
    assert [e.cursor for e in _real(seen)] == [e.cursor for e in stored]
    assert [s for s in states(stored) if s in TERMINAL_STATES] == ["SUCCEEDED"]
    # The attempts that failed while Valkey was down are logged, before the retry's tokens.
    failed = [i for i, e in enumerate(stored) if e.HasField("log")]
    assert failed and all("EVENT_LOG_UNAVAILABLE" in stored[i].log.message for i in failed)
    retry = max(i for i, e in enumerate(stored) if e.HasField("progress"))
    assert max(failed) < retry
    final = [e.token.index for e in stored[retry:] if e.HasField("token")]
    assert final == list(range(WORDS))


async def _follow(planner: Planner, name: str) -> list[events_pb2.JobEvent]:
    request = jobs_pb2.WatchJobRequest(name=name)
    return [event async for event in planner.stub.WatchJob(request, metadata=planner.md())]


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_temporal_restart_finds_the_planner_and_the_worker_serving_again(
    infra: Infra, valkey_client: Valkey, tmp_path: Path
) -> None:
    temporal = restartable.temporal(tmp_path)
    await temporal.start()
    worker: Process | None = None
    try:
        client = await process.connect_temporal(temporal.address, "default", wait_seconds=30)
        fake = PacedInference()
        queue = f"test-{uuid.uuid4().hex}"
        async with (
            serving(fake) as address,
            running_planner(client, valkey_client, fake, queue) as planner,
        ):
            log = tmp_path / "w.log"
            worker = await start_worker(temporal.address, infra.valkey, address, queue, log)
            before = await planner.create(prompt="before the restart")
            await until_succeeded(planner, before.name, within_s=30)

            temporal.kill()
            await asyncio.sleep(2.0)
            await temporal.start()  # same port, same SQLite file

            after = await _create_when_served(planner, "after the restart")
            await until_succeeded(planner, after.name, within_s=120)
            assert (await planner.get(before.name)).state == Job.SUCCEEDED  # kept
            assert worker.popen.poll() is None  # the same worker process served it
    finally:
        if worker is not None:
            worker.stop()
        temporal.stop()


async def _create_when_served(planner: Planner, prompt: str) -> jobs_pb2.Job:
    """CreateJob, retried while the planner answers UNAVAILABLE (Temporal still starting)."""
    job_id = f"j-{uuid.uuid4().hex[:12]}"  # the same id on every try: idempotent create
    async with asyncio.timeout(60):
        while True:
            try:
                return await planner.create(prompt=prompt, job_id=job_id)
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                await asyncio.sleep(0.5)


async def until_succeeded(planner: Planner, name: str, within_s: float) -> None:
    async def succeeded() -> bool:
        try:
            return (await planner.get(name)).state == Job.SUCCEEDED
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            return False

    await eventually(succeeded, within_s=within_s)
