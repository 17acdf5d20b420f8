"""Generate streams through the real service and a real Triton: multiplexing, cancel, drop."""

from __future__ import annotations

from collections import defaultdict

import grpc
import pytest
from google.rpc import error_details_pb2
from prometheus_client import REGISTRY

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.inference.breaker import State

from .support import (
    Service,
    TritonProcess,
    deltas,
    detail_of,
    expected_tokens,
    prompt_of,
    reason_of,
    running_service,
    unique,
)


@pytest.mark.asyncio
async def test_generation_streams_tokens_then_done_with_usage(service: Service) -> None:
    stream = service.stream()
    prompt = "the quick brown fox"
    stream.start("one", prompt)

    *tokens, end = await stream.until_end("one")

    assert deltas(tokens) == expected_tokens(prompt, 8)
    assert [t.delta.index for t in tokens] == list(range(8))
    assert end.WhichOneof("event") == "done"
    assert end.done.finish_reason == pb.FINISH_REASON_STOP
    assert (end.done.usage.prompt_tokens, end.done.usage.completion_tokens) == (4, 8)
    assert end.done.model == "test-streamer"


@pytest.mark.asyncio
async def test_the_default_chat_alias_serves_the_chat_model_with_max_tokens(
    service: Service,
) -> None:
    stream = service.stream()
    stream.start("short", "Say hello.", model="default-chat", max_tokens=3)

    *tokens, end = await stream.until_end("short")

    assert 1 <= len(deltas(tokens)) <= 3  # a delta may hold more than one token
    assert end.done.finish_reason == pb.FINISH_REASON_LENGTH
    assert end.done.usage.completion_tokens == 3
    assert end.done.usage.prompt_tokens > 3  # the chat template wraps the prompt
    assert end.done.model == "smollm2-135m-instruct"  # the model that served, not the alias


@pytest.mark.asyncio
async def test_a_conversation_reaches_the_chat_model_and_greedy_is_repeatable(
    service: Service,
) -> None:
    stream = service.stream()
    turns = [("system", "Answer in one word."), ("user", "What colour is the sky?")]
    texts = []
    for request_id in ("c1", "c2"):
        stream.chat(request_id, turns, model="smollm2-135m-instruct", max_tokens=8)
        events = await stream.until_end(request_id)
        assert events[-1].done.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)
        texts.append("".join(deltas(events)))

    assert texts[0].strip() and texts[0] == texts[1]


@pytest.mark.asyncio
async def test_cancel_stops_one_generation_and_not_the_others(
    service: Service, triton_server: TritonProcess
) -> None:
    stream = service.stream()
    prompt = prompt_of(15)  # 30 tokens each: 0.6 s at 50 tokens/s
    a, b, c = unique("a"), unique("b"), unique("c")
    for request_id in (a, b, c):
        stream.start(request_id, prompt)
    events: dict[str, list[pb.GenerateResponse]] = defaultdict(list)
    ended: set[str] = set()
    after_cancel = 0
    while ended != {a, b, c}:
        response = await stream.next()
        events[response.request_id].append(response)
        if response.WhichOneof("event") != "delta":
            ended.add(response.request_id)
        elif response.request_id == b and len(events[b]) == 3:
            stream.cancel(b)
        elif response.request_id == b and len(events[b]) > 3:
            after_cancel += 1
    stream.half_close()

    for request_id in (a, c):
        assert deltas(events[request_id]) == expected_tokens(prompt, 30)
        assert events[request_id][-1].done.finish_reason == pb.FINISH_REASON_STOP
    end = events[b][-1]
    assert end.done.finish_reason == pb.FINISH_REASON_CANCELLED
    assert after_cancel <= 2
    assert end.done.usage.completion_tokens == len(deltas(events[b]))
    # The backend itself stopped, within a couple of tokens of the cancel.
    assert await triton_server.cancelled_after(b) <= 3 + 2
    assert await stream.call.code() == grpc.StatusCode.OK


def _finished(reason: str) -> float:
    labels = {"model": "test-streamer", "finish_reason": reason}
    return (
        REGISTRY.get_sample_value("switchboard_inference_generations_finished_total", labels) or 0
    )


@pytest.mark.asyncio
async def test_client_drop_cancels_every_generation(
    service: Service, triton_server: TritonProcess
) -> None:
    dropped_before = _finished("dropped")
    stream = service.stream()
    ids = [unique("drop"), unique("drop")]
    for request_id in ids:
        stream.start(request_id, prompt_of(50))  # 100 tokens: 2 s at 50 tokens/s
    seen: set[str] = set()
    while seen != set(ids):
        seen.add((await stream.next()).request_id)

    stream.call.cancel()

    for request_id in ids:
        assert await triton_server.cancelled_after(request_id) <= 10
    # Each generation ends (and is counted) before its Triton stream is cancelled.
    assert _finished("dropped") == dropped_before + 2
    assert REGISTRY.get_sample_value("switchboard_inference_active_generations") == 0
    follow_up = service.stream()
    follow_up.start("after", "still alive")
    assert (await follow_up.until_end("after"))[-1].done.finish_reason == pb.FINISH_REASON_STOP


@pytest.mark.asyncio
async def test_half_close_lets_open_generations_finish(service: Service) -> None:
    stream = service.stream()
    stream.start("last", "finish me please")
    stream.cancel("not-open")  # ignored: no such generation
    stream.half_close()

    events = [response async for response in stream.call]

    assert deltas(events) == expected_tokens("finish me please", 6)
    assert events[-1].done.finish_reason == pb.FINISH_REASON_STOP
    assert {e.request_id for e in events} == {"last"}
    assert await stream.call.code() == grpc.StatusCode.OK


@pytest.mark.asyncio
async def test_backend_error_ends_that_generation_only(service: Service) -> None:
    stream = service.stream()
    # max_tokens is dropped for a model without that input, so the model's own error shows.
    stream.start("fails", "boom", model="test-fail", max_tokens=5)

    (end,) = await stream.until_end("fails")

    assert end.WhichOneof("event") == "error"
    assert reason_of(end.error) == "BACKEND_ERROR"
    assert end.error.code == grpc.StatusCode.INTERNAL.value[0]
    assert "this model always fails" in end.error.message
    stream.start("works", "a b")
    assert (await stream.until_end("works"))[-1].done.finish_reason == pb.FINISH_REASON_STOP


@pytest.mark.asyncio
async def test_invalid_start_is_an_error_for_that_id(service: Service) -> None:
    stream = service.stream()
    stream.start("empty", "")

    (end,) = await stream.until_end("empty")

    assert end.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reason_of(end.error) == "VALIDATION_FAILED"
    bad = detail_of(end.error, error_details_pb2.BadRequest)
    # Neither prompt nor messages: the message-level rule names the start itself.
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("start", "generate_start.input")
    ]
    stream.start("fine", "a b")
    assert (await stream.until_end("fine"))[-1].done.finish_reason == pb.FINISH_REASON_STOP


@pytest.mark.asyncio
async def test_unknown_model_is_model_not_found(service: Service) -> None:
    stream = service.stream()
    stream.start("who", "hello", model="no-such-model")

    (end,) = await stream.until_end("who")

    assert end.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert reason_of(end.error) == "MODEL_NOT_FOUND"


@pytest.mark.asyncio
async def test_duplicate_open_request_id_is_refused(service: Service) -> None:
    stream = service.stream()
    stream.start("twice", prompt_of(5))
    first = await stream.next()
    stream.start("twice", "again")

    events = [first]
    while events[-1].WhichOneof("event") == "delta":
        events.append(await stream.next())

    refusal = events.pop()
    assert reason_of(refusal.error) == "DUPLICATE_REQUEST_ID"
    rest = await stream.until_end("twice")
    # The open generation is untouched by the refused start.
    assert deltas(events + rest) == expected_tokens(prompt_of(5), 10)
    assert rest[-1].done.finish_reason == pb.FINISH_REASON_STOP


@pytest.mark.asyncio
async def test_over_the_limit_is_queue_full_with_retry_info(triton_server: TritonProcess) -> None:
    async with running_service(
        triton_server.grpc_address, max_concurrent_generations=1, max_queued_generations=0
    ) as service:
        stream = service.stream()
        stream.start("long", prompt_of(50))
        await stream.next()
        stream.start("extra", "a b")

        refusal = await stream.next()
        while refusal.request_id == "long":
            refusal = await stream.next()
        stream.cancel("long")
        while (await stream.next()).WhichOneof("event") == "delta":
            pass
        stream.start("extra", "a b")  # the cancelled generation gave its slot back
        retried = await stream.until_end("extra")

    assert refusal.request_id == "extra"
    assert refusal.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert reason_of(refusal.error) == "QUEUE_FULL"
    assert detail_of(refusal.error, error_details_pb2.RetryInfo).retry_delay.seconds == 1
    assert retried[-1].done.finish_reason == pb.FINISH_REASON_STOP


@pytest.mark.asyncio
async def test_a_queued_generation_starts_when_a_slot_frees(triton_server: TritonProcess) -> None:
    async with running_service(
        triton_server.grpc_address, max_concurrent_generations=1, max_queued_generations=1
    ) as service:
        stream = service.stream()
        stream.start("first", prompt_of(10))  # 20 tokens: 0.4 s at 50 tokens/s
        await stream.next()
        stream.start("waits", "a b")
        events: dict[str, list[pb.GenerateResponse]] = defaultdict(list)
        while len([e for e in events.values() if e[-1].WhichOneof("event") != "delta"]) < 2:
            response = await stream.next()
            events[response.request_id].append(response)
        queued = service.router.backend("test-streamer").admission

    # The second waited in line instead of being refused, and ran after the first.
    assert deltas(events["waits"]) == expected_tokens("a b", 4)
    assert events["waits"][-1].done.finish_reason == pb.FINISH_REASON_STOP
    assert (queued.in_flight, queued.queued) == (0, 0)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0


@pytest.mark.asyncio
async def test_a_flaky_route_falls_back_and_then_skips_the_failing_model(
    service: Service, triton_server: TritonProcess
) -> None:
    fallbacks = "switchboard_inference_fallbacks_total"
    skips_before = _sample(
        fallbacks, route="test-flaky-chat", model="test-fail", reason="CIRCUIT_OPEN"
    )
    calls_before = await triton_server.inference_count("test-fail")
    stream = service.stream()
    # Default breaker: open at >= 50 % failures once 5 calls were seen.
    for i in range(5):
        stream.start(f"f{i}", "one two", model="test-flaky-chat")
        *tokens, end = await stream.until_end(f"f{i}")
        assert (deltas(tokens), end.done.model) == (expected_tokens("one two", 4), "test-streamer")
    breaker = service.router.backend("test-fail").breaker
    assert breaker.state is State.OPEN
    assert _sample("switchboard_inference_breaker_state", model="test-fail") == 2
    assert await triton_server.inference_count("test-fail") == calls_before + 5

    for i in range(3):
        stream.start(f"s{i}", "one two", model="test-flaky-chat")
        assert (await stream.until_end(f"s{i}"))[-1].done.model == "test-streamer"

    # Skipped without a call: Triton ran test-fail no more.
    assert await triton_server.inference_count("test-fail") == calls_before + 5
    skips = _sample(fallbacks, route="test-flaky-chat", model="test-fail", reason="CIRCUIT_OPEN")
    assert skips == skips_before + 3


@pytest.mark.asyncio
async def test_an_open_breaker_without_fallback_is_circuit_open_with_retry_info(
    triton_server: TritonProcess,
) -> None:
    async with running_service(
        triton_server.grpc_address, breaker_min_calls=2, breaker_open_s=20
    ) as service:
        stream = service.stream()
        for i in range(2):
            stream.start(f"f{i}", "boom", model="test-fail")
            assert reason_of((await stream.until_end(f"f{i}"))[-1].error) == "BACKEND_ERROR"
        stream.start("refused", "boom", model="test-fail")
        (end,) = await stream.until_end("refused")

    assert end.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert reason_of(end.error) == "CIRCUIT_OPEN"
    delay = detail_of(end.error, error_details_pb2.RetryInfo).retry_delay
    assert 15 <= delay.seconds <= 20


@pytest.mark.asyncio
async def test_a_hung_model_is_first_token_timeout_and_is_cancelled(
    triton_server: TritonProcess,
) -> None:
    async with running_service(triton_server.grpc_address, first_token_timeout_s=0.3) as service:
        stream = service.stream()
        request_id = unique("hang")
        stream.start(request_id, "anyone there?", model="test-hang")
        (end,) = await stream.until_end(request_id)

    assert end.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert reason_of(end.error) == "FIRST_TOKEN_TIMEOUT"
    await triton_server.logged(rf"test-hang: request '{request_id}' cancelled")


@pytest.mark.asyncio
async def test_cancel_one_of_three_smollm2_generations(
    service: Service, triton_server: TritonProcess
) -> None:
    """The issue's acceptance test: on one stream, three generations on the real chat model;
    cancelling one stops it, and the model's own work, while the other two complete."""
    stream = service.stream()
    ids = [unique("smol") for _ in range(3)]
    for request_id in ids:
        stream.start(
            request_id, "Tell me a story about a robot.", model="default-chat", max_tokens=40
        )
    events: dict[str, list[pb.GenerateResponse]] = defaultdict(list)
    victim = ""
    while len([i for i in ids if events[i] and events[i][-1].WhichOneof("event") != "delta"]) < 3:
        response = await stream.next()
        events[response.request_id].append(response)
        # The model runs one generation at a time: cancel the first to reach 3 deltas.
        if not victim and len(deltas(events[response.request_id])) == 3:
            victim = response.request_id
            stream.cancel(victim)
    stream.half_close()

    ends = {i: events[i][-1] for i in ids}
    assert ends[victim].done.finish_reason == pb.FINISH_REASON_CANCELLED
    assert ends[victim].done.model == "smollm2-135m-instruct"
    assert len(deltas(events[victim])) <= 3 + 2
    assert await triton_server.cancelled_after(victim) <= 3 + 2
    for request_id in set(ids) - {victim}:
        done = ends[request_id].done
        assert done.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
        assert done.model == "smollm2-135m-instruct"
        assert 0 < done.usage.completion_tokens <= 40
        assert "".join(deltas(events[request_id])).strip()
    assert await stream.call.code() == grpc.StatusCode.OK
