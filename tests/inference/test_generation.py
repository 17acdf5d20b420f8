"""One generation against the real Triton: its deadlines end it and stop the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.inference.generation import Generation, Limits
from switchboard.inference.models import GENERATE, Model
from switchboard.inference.triton import TritonClient

from .support import RATE, TritonProcess, deltas, prompt_of, reason_of, unique

STREAMER = Model(
    "test-streamer", "test-streamer", GENERATE, takes_max_tokens=True, tokens_per_second=RATE
)


@pytest_asyncio.fixture
async def triton(triton_server: TritonProcess) -> AsyncIterator[TritonClient]:
    client = TritonClient(triton_server.grpc_address)
    yield client
    await client.close()


async def _run(
    triton: TritonClient, request_id: str, prompt: str, limits: Limits
) -> list[pb.GenerateResponse]:
    events: list[pb.GenerateResponse] = []
    start = pb.GenerateStart(model=STREAMER.name, prompt=prompt)
    generation = Generation(
        request_id, STREAMER, start, triton=triton, limits=limits, emit=events.append
    )
    await generation.run()
    return events


@pytest.mark.asyncio
async def test_no_first_token_in_time_is_first_token_timeout(triton: TritonClient) -> None:
    # A microsecond: no Triton answers that fast, so the first-token deadline always wins.
    events = await _run(triton, unique("ttft"), "a b", Limits(first_token_s=1e-6, total_s=10))

    (end,) = events
    assert reason_of(end.error) == "FIRST_TOKEN_TIMEOUT"


@pytest.mark.asyncio
async def test_too_long_is_generation_timeout_and_stops_the_backend(
    triton: TritonClient, triton_server: TritonProcess
) -> None:
    request_id = unique("slow")
    # 100 tokens at 50 tokens/s need 2 s; the deadline allows about 10 of them.
    events = await _run(triton, request_id, prompt_of(50), Limits(first_token_s=5, total_s=0.2))

    *tokens, end = events
    assert reason_of(end.error) == "GENERATION_TIMEOUT"
    assert 1 <= len(deltas(tokens)) <= 15
    assert await triton_server.cancelled_after(request_id) <= len(tokens) + 2


@pytest.mark.asyncio
async def test_first_token_deadline_does_not_limit_later_tokens(triton: TritonClient) -> None:
    # 20 tokens take 0.4 s, well past the first-token deadline but inside the total.
    events = await _run(triton, unique("ok"), prompt_of(10), Limits(first_token_s=0.2, total_s=5))

    assert len(deltas(events)) == 20
    assert events[-1].done.finish_reason == pb.FINISH_REASON_STOP
