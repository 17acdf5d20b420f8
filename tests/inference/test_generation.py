"""One generation against the real Triton: deadlines stop the backend, routes fall back."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import pytest
import pytest_asyncio

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.inference.breaker import State
from switchboard.inference.config import Settings
from switchboard.inference.errors import BackendError
from switchboard.inference.generation import Generation, Limits
from switchboard.inference.models import CHAT, GENERATE, Catalog, Model
from switchboard.inference.routing import Router
from switchboard.inference.server import build_router
from switchboard.inference.triton import Finish, GenerateCall, Token, TritonClient

from .support import RATE, TritonProcess, deltas, prompt_of, reason_of, unique

STREAMER = Model(
    "test-streamer", "test-streamer", GENERATE, takes_max_tokens=True, tokens_per_second=RATE
)
SLOW = Model("slow", "test-streamer", GENERATE, tokens_per_second=4)  # a token every 0.25 s
FAIL = Model("test-fail", "test-fail", GENERATE)
CHATTY = Model("chatty", "chatty", GENERATE, CHAT, takes_max_tokens=True, takes_sampling=True)
CATALOG = Catalog([STREAMER, SLOW, FAIL, CHATTY], {"flaky": ["test-fail", "test-streamer"]})
RELAXED = Limits(first_token_s=5, total_s=10, inter_token_s=5)


@pytest_asyncio.fixture
async def triton(triton_server: TritonProcess) -> AsyncIterator[TritonClient]:
    client = TritonClient(triton_server.grpc_address)
    yield client
    await client.close()


@pytest.fixture
def router() -> Router:
    return build_router(Settings(), CATALOG)


async def _run(
    triton: TritonClient,
    router: Router,
    request_id: str,
    start: pb.GenerateStart,
    limits: Limits = RELAXED,
) -> list[pb.GenerateResponse]:
    events: list[pb.GenerateResponse] = []
    route = router.resolve(start.model, GENERATE)
    generation = Generation(
        request_id, route, start, router=router, triton=triton, limits=limits, emit=events.append
    )
    await generation.run()
    return events


def _start(prompt: str, model: str = "test-streamer") -> pb.GenerateStart:
    return pb.GenerateStart(model=model, prompt=prompt)


@pytest.mark.asyncio
async def test_no_first_token_in_time_is_first_token_timeout(
    triton: TritonClient, router: Router
) -> None:
    # A microsecond: no Triton answers that fast, so the first-token deadline always wins.
    limits = Limits(first_token_s=1e-6, total_s=10, inter_token_s=10)
    events = await _run(triton, router, unique("ttft"), _start("a b"), limits)

    (end,) = events
    assert reason_of(end.error) == "FIRST_TOKEN_TIMEOUT"
    # A backend that misses its first-token deadline counts against its breaker.
    assert router.backend("test-streamer").breaker.failures() == (1, 1)


@pytest.mark.asyncio
async def test_too_long_is_generation_timeout_and_stops_the_backend(
    triton: TritonClient, router: Router, triton_server: TritonProcess
) -> None:
    request_id = unique("slow")
    # 100 tokens at 50 tokens/s need 2 s; the deadline allows about 10 of them.
    limits = Limits(first_token_s=5, total_s=0.2, inter_token_s=5)
    events = await _run(triton, router, request_id, _start(prompt_of(50)), limits)

    *tokens, end = events
    assert reason_of(end.error) == "GENERATION_TIMEOUT"
    assert 1 <= len(deltas(tokens)) <= 15
    # The backend stops within a few tokens of the deadline: compared with the tokens due by
    # then (total_s x RATE), not with those the client had read, which on a loaded machine
    # lag the sent ones by whatever was in flight when the deadline fired (once 8 read, 12
    # sent). Left running, it would send all 100.
    due = round(limits.total_s * RATE)
    assert await triton_server.cancelled_after(request_id) <= due + 4


@pytest.mark.asyncio
async def test_a_gap_between_tokens_is_inter_token_timeout_and_stops_the_backend(
    triton: TritonClient, router: Router, triton_server: TritonProcess
) -> None:
    request_id = unique("gap")
    limits = Limits(first_token_s=5, total_s=10, inter_token_s=0.1)
    events = await _run(triton, router, request_id, _start("a b c", model="slow"), limits)

    *tokens, end = events
    assert deltas(tokens) == ["a "]  # the first comes at once, the second 0.25 s later
    assert end.error.code == 4  # DEADLINE_EXCEEDED
    assert reason_of(end.error) == "INTER_TOKEN_TIMEOUT"
    assert await triton_server.cancelled_after(request_id) <= 2
    # The backend had proven itself with a token: the breaker saw a success.
    assert router.backend("slow").breaker.failures() == (0, 1)


@pytest.mark.asyncio
async def test_first_token_deadline_does_not_limit_later_tokens(
    triton: TritonClient, router: Router
) -> None:
    # 20 tokens take 0.4 s, well past the first-token deadline but inside the total.
    limits = Limits(first_token_s=0.2, total_s=5, inter_token_s=1)
    events = await _run(triton, router, unique("ok"), _start(prompt_of(10)), limits)

    assert len(deltas(events)) == 20
    assert events[-1].done.finish_reason == pb.FINISH_REASON_STOP


@pytest.mark.asyncio
async def test_a_failing_first_choice_falls_back_before_any_token(
    triton: TritonClient, router: Router
) -> None:
    events = await _run(triton, router, unique("flaky"), _start("one two", model="flaky"))

    assert deltas(events) == ["one ", "two ", "one ", "two "]
    assert events[-1].done.model == "test-streamer"
    assert router.backend("test-fail").breaker.failures() == (1, 1)
    assert router.backend("test-streamer").breaker.failures() == (0, 1)


class TokenThenFail:
    """Stands in for Triton where no model can do this: stream a token, then fail.

    It also records the GenerateCall it was given, to see what a start becomes.
    """

    def __init__(self) -> None:
        self.calls: list[GenerateCall] = []

    async def generate(self, call: GenerateCall) -> AsyncGenerator[Token | Finish, None]:
        self.calls.append(call)
        yield Token("half ")
        raise BackendError("the backend died mid-stream")


@pytest.mark.asyncio
async def test_no_fallback_once_a_token_was_sent() -> None:
    triton = TokenThenFail()
    router = build_router(
        Settings(), Catalog([STREAMER, CHATTY], {"r": ["chatty", "test-streamer"]})
    )

    events = await _run(cast(TritonClient, triton), router, "mid", _start("hi", model="r"))

    assert deltas(events) == ["half "]
    assert reason_of(events[-1].error) == "BACKEND_ERROR"
    assert [c.model for c in triton.calls] == ["chatty"]
    assert router.backend("chatty").breaker.state is State.CLOSED


@pytest.mark.asyncio
async def test_a_chat_model_gets_messages_and_sampling_a_raw_one_a_prompt() -> None:
    triton = TokenThenFail()
    router = build_router(Settings(), CATALOG)
    params: dict[str, Any] = {
        "max_tokens": 7,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n"],
        "seed": 2**64 - 2,
    }
    turns = [
        pb.ChatMessage(role="system", content="be brief"),
        pb.ChatMessage(role="user", content="hi"),
    ]
    for model in ("chatty", "test-streamer"):
        start = pb.GenerateStart(model=model, messages=turns, params=pb.SamplingParams(**params))
        await _run(cast(TritonClient, triton), router, model, start)
    await _run(cast(TritonClient, triton), router, "p", _start("hello", model="chatty"))

    chat, raw, prompt = triton.calls
    assert json.loads(chat.messages or "") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert (chat.max_tokens, chat.temperature, chat.stop, chat.seed) == (7, 0.5, ("\n",), 2**32 - 2)
    assert chat.top_p == pytest.approx(0.9)
    assert (raw.messages, raw.prompt, raw.max_tokens) == (None, "be brief\nhi", 7)
    assert (raw.temperature, raw.top_p, raw.stop, raw.seed) == (None, None, (), None)
    assert json.loads(prompt.messages or "") == [{"role": "user", "content": "hello"}]
