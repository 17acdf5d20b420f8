"""The OpenAI-compatible routes through the official `openai` client, against the real edge
app under uvicorn and a stand-in inference service (tests/edge/inference_standin.py) on a
real gRPC server. The real inference service and Triton: tests/e2e/test_openai.py."""

from __future__ import annotations

import base64
import dataclasses
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2
from openai.types.chat import ChatCompletionMessageParam

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.common.errors import ResourceExhausted
from switchboard.edge.openai import requests as openai_requests
from switchboard.edge.openai import wire as openai_wire
from switchboard.edge.openai.endpoints import error_response
from switchboard.edge.server import EdgeServer, build_server

from ..planner.support import eventually
from .conftest import API_KEY, CLIENT, WAIT_SECONDS, StandInPlanner, running, settings_for
from .inference_standin import ChatInference

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello brave new world"}]


@pytest_asyncio.fixture
async def client(edge: EdgeServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{edge.port}/v1",
        api_key=API_KEY,
        max_retries=0,
        timeout=WAIT_SECONDS,
    ) as oai:
        yield oai


@pytest_asyncio.fixture
async def http(edge: EdgeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{edge.port}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=WAIT_SECONDS,
    ) as plain:
        yield plain


async def cancelled(fake: ChatInference) -> None:
    """Until the stand-in has seen a GenerateCancel for its one generation."""
    (request_id,) = fake.started_ids

    async def seen() -> bool:
        return request_id in fake.cancels

    await eventually(seen, WAIT_SECONDS)


@pytest.mark.asyncio
async def test_a_chat_completion_is_one_generation(
    client: openai.AsyncOpenAI, fake: ChatInference
) -> None:
    reply = await client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "hello brave new world"},
        ],
        max_tokens=7,
        stop="zzz",
        seed=42,
        user="alice@example.com",
    )

    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "echo"
    (choice,) = reply.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "be brief hello brave new world"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 6)
    assert reply.usage.total_tokens == 12
    (start,) = fake.started
    assert [(m.role, m.content) for m in start.messages] == [
        ("system", "be brief"),
        ("user", "hello brave new world"),
    ]
    params = start.params
    assert (params.max_tokens, list(params.stop), params.seed) == (7, ["zzz"], 42)
    assert params.temperature == pytest.approx(1.0), "OpenAI's default, not greedy 0"
    assert fake.started_ids == [reply.id], "the completion id is the generation's request id"
    (seen,) = fake.starts
    assert seen.metadata["x-client-id"] == CLIENT
    assert seen.metadata["x-session-id"] == "alice@example.com"
    assert "traceparent" in seen.metadata


@pytest.mark.asyncio
async def test_session_header_wins_and_odd_users_are_hashed(
    client: openai.AsyncOpenAI, fake: ChatInference
) -> None:
    await client.chat.completions.create(
        model="echo", messages=USER, user="anyone", extra_headers={"X-Session-Id": "s-1"}
    )
    await client.chat.completions.create(model="echo", messages=USER, user="Zoë Ünicode")
    await client.chat.completions.create(model="echo", messages=USER)

    sessions = [s.metadata.get("x-session-id") for s in fake.starts]
    assert sessions[0] == "s-1"
    assert sessions[1] == openai_requests.hashed("Zoë Ünicode")
    assert sessions[2] is None


@pytest.mark.asyncio
async def test_a_streamed_completion_sends_role_deltas_finish_usage_and_done(
    client: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    stream = await client.chat.completions.create(
        model="default-chat",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert len({c.id for c in chunks}) == 1
    assert all(c.object == "chat.completion.chunk" and c.model == "default-chat" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello brave new world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])

    async with http.stream(
        "POST", "/v1/chat/completions", json={"model": "echo", "messages": USER, "stream": True}
    ) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        frames = [line async for line in raw.aiter_lines() if line]
    assert frames[-1] == "data: [DONE]"


@pytest.mark.asyncio
async def test_unknown_model_is_not_found_streamed_or_not(client: openai.AsyncOpenAI) -> None:
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="nope", messages=USER, stream=stream)
        assert caught.value.code == "model_not_found"
        assert caught.value.type == "invalid_request_error"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32 - 1}, "seed"),
    ],
)
async def test_bad_parameters_are_refused_naming_the_parameter(
    client: openai.AsyncOpenAI, fake: ChatInference, body: dict[str, Any], param: str
) -> None:
    request = {"model": "echo", "messages": USER, **body}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.post("/chat/completions", body=request, cast_to=httpx.Response)

    assert caught.value.param == param
    assert caught.value.code == "validation_failed"
    assert fake.started == [], "a bad request never reaches a model"


@pytest.mark.asyncio
async def test_errors_have_exactly_the_openai_shape(http: httpx.AsyncClient) -> None:
    reply = await http.post("/v1/chat/completions", content=b"{not json")
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "malformed_request",
        None,
    )
    assert (await http.post("/v1/embeddings", json=["a"])).status_code == 400


@pytest.mark.asyncio
async def test_a_failing_model_maps_its_reason(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="fail", messages=USER)
    assert caught.value.code == "fake_model_failed"


@pytest.mark.asyncio
async def test_a_stream_that_breaks_after_the_headers_reports_in_band(
    client: openai.AsyncOpenAI,
) -> None:
    """`flaky` sends one delta, then the whole Generate stream fails (UNAVAILABLE)."""
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="flaky", messages=USER)

    stream = await client.chat.completions.create(model="flaky", messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            seen.append(chunk)
    assert seen[0].choices[0].delta.role == "assistant"
    assert caught.value.code == "fake_dropped"


@pytest.mark.asyncio
async def test_a_client_that_leaves_a_stream_cancels_its_generation(
    client: openai.AsyncOpenAI, fake: ChatInference
) -> None:
    stream = await client.chat.completions.create(model="slow", messages=USER, stream=True)
    received = []
    async for chunk in stream:
        received.append(chunk)
        if len(received) == 3:
            break
    await stream.close()

    await cancelled(fake)
    assert received[-1].choices[0].delta.content == " w1"


@pytest.mark.asyncio
async def test_a_client_that_leaves_a_whole_completion_cancels_its_generation(
    edge: EdgeServer, fake: ChatInference
) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{edge.port}/v1", api_key=API_KEY, max_retries=0, timeout=0.5
    ) as impatient:
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(model="slow", messages=USER)

    await cancelled(fake)


@pytest.mark.asyncio
async def test_embeddings_as_floats_and_base64(client: openai.AsyncOpenAI) -> None:
    reply = await client.embeddings.create(
        model="default-embed", input=["one", "two words"], encoding_format="float"
    )
    assert reply.model == "echo-embed"
    assert [d.index for d in reply.data] == [0, 1]
    assert [d.embedding for d in reply.data] == [[3.0, 1.0], [9.0, 2.0]]

    raw = await client.embeddings.with_raw_response.create(
        model="echo-embed", input="three little words", encoding_format="base64"
    )
    (item,) = raw.http_response.json()["data"]
    assert struct.unpack("<2f", base64.b64decode(item["embedding"])) == (18.0, 3.0)


@pytest.mark.asyncio
async def test_embedding_refusals(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="echo-embed", input=[[1, 2, 3]])
    assert caught.value.param == "input"
    assert "token arrays" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="echo-embed", input=[])
    assert caught.value.param == "input"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.embeddings.create(model="nope", input="x")
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")


@pytest.mark.asyncio
async def test_models_include_aliases(client: openai.AsyncOpenAI) -> None:
    names = [m.id async for m in client.models.list()]
    assert {"echo", "default-chat", "echo-embed", "default-embed", "slow"} <= set(names)
    alias = await client.models.retrieve("default-chat")
    assert (alias.id, alias.owned_by, alias.object) == ("default-chat", "switchboard", "model")
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")


@pytest.mark.asyncio
async def test_a_missing_or_wrong_key_is_refused(edge: EdgeServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{edge.port}/v1", api_key="wrong", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()


@pytest.mark.asyncio
async def test_an_unreachable_inference_service_is_503(
    planner: StandInPlanner, no_planner_address: str
) -> None:
    settings = dataclasses.replace(
        settings_for(planner.address), inference_address=no_planner_address
    )
    async with (
        running(build_server(settings)) as server,
        openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{server.port}/v1",
            api_key=API_KEY,
            max_retries=0,
            timeout=WAIT_SECONDS,
        ) as oai,
    ):
        for call in (
            oai.chat.completions.create(model="echo", messages=USER),
            oai.embeddings.create(model="echo-embed", input="x"),
        ):
            with pytest.raises(openai.InternalServerError) as caught:
                await call
            assert caught.value.status_code == 503
            assert "the inference service did not answer" in caught.value.message


def test_param_names_map_back_from_contract_paths() -> None:
    assert openai_requests.param_of("start.params.top_p") == "top_p"
    assert openai_requests.param_of("start.messages[2].role") == "messages[2].role"
    assert openai_requests.param_of("texts[0]") == "input[0]"
    assert openai_requests.param_of("request_id") == "id"
    assert openai_requests.param_of("start.model") == "model"


def test_finish_reasons() -> None:
    length = pb.GenerateDone(finish_reason=pb.FINISH_REASON_LENGTH)
    assert openai_wire.finish_reason(length) == "length"
    assert openai_wire.finish_reason(pb.GenerateDone(finish_reason=pb.FINISH_REASON_STOP)) == "stop"


def test_retry_info_becomes_retry_after() -> None:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(1200)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    full = ResourceExhausted("queue full", reason="QUEUE_FULL", details=[detail])
    response = error_response(full)
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")
    assert openai_wire.retry_after(ResourceExhausted("no hint")) is None
