"""A worker process killed (SIGKILL) in the middle of a generation loses no job: once its
heartbeat times out, Temporal retries the activity on another worker, and the job succeeds
with a complete token sequence for the final attempt and exactly one terminal event.

The workers are real `python -m switchboard.planner.work.worker` processes, so the death is real;
the inference service is the tests' fake with a paced model, defined here.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from valkey.asyncio import Valkey

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.jobs.v1 import events_pb2, jobs_pb2
from switchboard.common.jobstates import TERMINAL_STATE_NAMES as TERMINAL_STATES

from .conftest import Infra
from .fake_inference import FakeInference
from .processes import Process, start_worker
from .support import eventually, running_planner, serving, states

PACED = "paced"
PACE_S = 0.1
WORDS = 60  # 6 s per attempt: long enough to be killed in the middle
KILL_AFTER_TOKENS = 10
READY_S = 30.0
# The kill is noticed by the activity's heartbeat timeout (10 s), then the retry runs 6 s.
SUCCEED_WITHIN_S = 35.0


class PacedInference(FakeInference):
    """The fake, plus `paced`: the prompt's words, one every PACE_S, then done (STOP)."""

    async def _generate(
        self, request_id: str, start: pb.GenerateStart, out: asyncio.Queue[object]
    ) -> None:
        if start.model != PACED:
            await super()._generate(request_id, start, out)
            return
        words = start.prompt.split()
        for index, word in enumerate(words):
            await asyncio.sleep(PACE_S)
            delta = pb.TokenDelta(text=word if index == 0 else " " + word, index=index)
            await out.put(pb.GenerateResponse(request_id=request_id, delta=delta))
        usage = pb.Usage(prompt_tokens=len(words), completion_tokens=len(words))
        done = pb.GenerateDone(finish_reason=pb.FINISH_REASON_STOP, usage=usage, model=PACED)
        await out.put(pb.GenerateResponse(request_id=request_id, done=done))


@pytest_asyncio.fixture
async def paced() -> AsyncIterator[tuple[PacedInference, str]]:
    fake = PacedInference()
    async with serving(fake) as address:
        yield fake, address


def _final_attempt(stored: list[events_pb2.JobEvent]) -> list[events_pb2.JobEvent]:
    """The events after the last "retrying" progress event (tokens restart there)."""
    retries = [i for i, e in enumerate(stored) if e.HasField("progress")]
    return stored[retries[-1] + 1 :] if retries else stored


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_job_survives_its_worker_killed_mid_generation(
    infra: Infra,
    temporal_client: Client,
    valkey_client: Valkey,
    paced: tuple[PacedInference, str],
    tmp_path: Path,
) -> None:
    fake, address = paced
    queue = f"test-{uuid.uuid4().hex}"
    prompt = " ".join(f"w{i}" for i in range(WORDS))
    first = await start_worker(
        infra.temporal, infra.valkey, address, queue, tmp_path / "worker-1.log"
    )
    second: Process | None = None
    try:
        async with running_planner(temporal_client, valkey_client, fake, queue) as planner:
            job = await planner.create(model=PACED, prompt=prompt)

            async def tokens_logged() -> bool:
                stored = await planner.stored(job.name)
                return sum(e.HasField("token") for e in stored) >= KILL_AFTER_TOKENS

            await eventually(tokens_logged)
            first.popen.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.popen.wait, 10) == -signal.SIGKILL
            second = await start_worker(
                infra.temporal, infra.valkey, address, queue, tmp_path / "worker-2.log"
            )

            async def succeeded() -> bool:
                return (await planner.get(job.name)).state == jobs_pb2.Job.SUCCEEDED

            await eventually(succeeded, within_s=SUCCEED_WITHIN_S)

            # The terminal event is stored before the snapshot says SUCCEEDED; the wait only
            # matters for workflows that began before the `events-before-state` patch.
            async def terminal_logged() -> bool:
                logged = states(await planner.stored(job.name))
                return any(state in TERMINAL_STATES for state in logged)

            await eventually(terminal_logged)
            stored = await planner.stored(job.name)
            done = await planner.get(job.name)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # The kill came mid-generation: the first attempt had logged some tokens, not all.
    killed = stored[: len(stored) - len(_final_attempt(stored))]
    assert KILL_AFTER_TOKENS <= sum(e.HasField("token") for e in killed) < WORDS
    final = _final_attempt(stored)
    assert [e.token.index for e in final if e.HasField("token")] == list(range(WORDS))
    assert [s for s in states(stored) if s in TERMINAL_STATES] == ["SUCCEEDED"]
    assert stored[-1].state_changed.state == "SUCCEEDED"
    assert states(stored)[:2] == ["QUEUED", "RUNNING"]
    assert done.result.generate.text == prompt
    assert [s.model for s in fake.starts] == [PACED, PACED]
