"""The `chat` pipeline end to end through the planner, Temporal, the worker and Valkey: the
window goes to the model, the turn is stored, GetChatSession returns the transcript, and a
cancelled or failed turn stores nothing.

The model is the planner tests' stand-in inference service (no Triton here), taught to
answer a conversation: it records the messages it was given and answers
`answer to <last message>` word by word (model `echo`), or as its other models do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Replayer

from switchboard.api.inference.v1 import inference_pb2 as pb
from switchboard.api.jobs.v1 import jobs_pb2, pipelines_pb2
from switchboard.common.jobref import JobRef
from switchboard.planner.flows.workflow import JobWorkflow

from .fake_inference import FakeInference
from .support import Planner, eventually, reason, serving, states

Job = jobs_pb2.Job


@dataclass
class ChatFake(FakeInference):
    conversations: list[list[tuple[str, str]]] = field(default_factory=list)

    async def _generate(
        self, request_id: str, start: pb.GenerateStart, out: asyncio.Queue[object]
    ) -> None:
        if start.messages:
            self.conversations.append([(m.role, m.content) for m in start.messages])
            prompt = f"answer to {start.messages[-1].content}"
            start = pb.GenerateStart(model=start.model, prompt=prompt, params=start.params)
        await super()._generate(request_id, start, out)


@pytest_asyncio.fixture
async def inference() -> AsyncIterator[tuple[FakeInference, str]]:
    """Overrides conftest's: the planner fixture gets the chat-aware stand-in."""
    fake = ChatFake()
    async with serving(fake) as address:
        yield fake, address


def _chat(session: str, message: str, *, model: str = "echo", system: str = "") -> Job:
    chat = pipelines_pb2.ChatInput(session_id=session, model=model, message=message, system=system)
    return Job(pipeline="chat", input=pipelines_pb2.JobInput(chat=chat))


async def _run(planner: Planner, job: Job, client_id: str | None = None) -> Job:
    created = await planner.stub.CreateJob(
        jobs_pb2.CreateJobRequest(job=job), metadata=planner.md(client_id)
    )
    seen = await planner.watch(created.name, client_id=client_id)
    assert states(seen)[-1] in ("SUCCEEDED", "FAILED", "CANCELLED")
    return await planner.stub.GetJob(
        jobs_pb2.GetJobRequest(name=created.name), metadata=planner.md(client_id)
    )


async def _session(
    planner: Planner, session: str, client_id: str | None = None
) -> jobs_pb2.ChatSession:
    request = jobs_pb2.GetChatSessionRequest(name=f"sessions/{session}")
    return await planner.stub.GetChatSession(request, metadata=planner.md(client_id))


def _fake(planner: Planner) -> ChatFake:
    assert isinstance(planner.fake, ChatFake)
    return planner.fake


@pytest.mark.asyncio
async def test_each_turn_sees_the_sessions_window_and_is_stored(planner: Planner) -> None:
    first = await _run(planner, _chat("trip", "hello there", system="Be brief."))
    assert first.state == Job.SUCCEEDED
    assert first.result.chat.text == "answer to hello there"
    assert first.result.chat.context_messages == 0
    assert first.result.chat.finish_reason == pb.FINISH_REASON_STOP

    second = await _run(planner, _chat("trip", "and then?"))
    assert second.result.chat.context_messages == 2

    assert _fake(planner).conversations == [
        [("system", "Be brief."), ("user", "hello there")],
        [("user", "hello there"), ("assistant", "answer to hello there"), ("user", "and then?")],
    ]
    transcript = await _session(planner, "trip")
    assert transcript.name == "sessions/trip"
    assert [(t.role, t.content, t.job) for t in transcript.turns] == [
        ("user", "hello there", first.name),
        ("assistant", "answer to hello there", first.name),
        ("user", "and then?", second.name),
        ("assistant", "answer to and then?", second.name),
    ]
    assert transcript.turns[0].create_time == first.create_time
    stamps = [t.create_time.ToNanoseconds() for t in transcript.turns]
    assert stamps == sorted(stamps)
    # Tokens streamed to the log as stage `generate`; the session pins the replica.
    tokens = [e.token for e in await planner.stored(second.name) if e.HasField("token")]
    assert "".join(t.text for t in tokens) == "answer to and then?"
    assert {t.stage for t in tokens} == {"generate"}
    start = planner.fake.starts[-1]
    assert start.metadata["x-session-id"] == f"{planner.client_id}/trip"


@pytest.mark.asyncio
async def test_sessions_are_the_callers_own(planner: Planner) -> None:
    await _run(planner, _chat("shared-name", "mine"))

    other = await _run(planner, _chat("shared-name", "theirs"), client_id="someone-else")
    assert other.result.chat.context_messages == 0  # not the first client's conversation
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _session(planner, "never-used")
    assert (caught.value.code(), reason(caught.value)) == (
        grpc.StatusCode.NOT_FOUND,
        "CHAT_SESSION_NOT_FOUND",
    )
    mine = await _session(planner, "shared-name")
    assert [t.content for t in mine.turns] == ["mine", "answer to mine"]
    theirs = await _session(planner, "shared-name", client_id="someone-else")
    assert [t.content for t in theirs.turns] == ["theirs", "answer to theirs"]


@pytest.mark.asyncio
async def test_a_cancelled_turn_stores_nothing(planner: Planner) -> None:
    await _run(planner, _chat("story", "start"))
    created = await planner.stub.CreateJob(
        jobs_pb2.CreateJobRequest(job=_chat("story", "go on", model="slow")),
        metadata=planner.md(),
    )

    async def streaming() -> bool:
        return any(e.HasField("token") for e in await planner.stored(created.name))

    await eventually(streaming)
    await planner.cancel(created.name)
    assert states(await planner.watch(created.name))[-1] == "CANCELLED"

    transcript = await _session(planner, "story")
    assert [t.content for t in transcript.turns] == ["start", "answer to start"]
    following = await _run(planner, _chat("story", "again"))
    assert following.result.chat.context_messages == 2  # the cancelled turn left no trace


@pytest.mark.asyncio
async def test_a_failed_generation_stores_nothing(planner: Planner) -> None:
    failed = await _run(planner, _chat("broken", "hello", model="fail"))
    assert failed.state == Job.FAILED
    assert failed.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _session(planner, "broken")
    assert reason(caught.value) == "CHAT_SESSION_NOT_FOUND"


@pytest.mark.asyncio
async def test_get_chat_session_validates_its_name(planner: Planner) -> None:
    request = jobs_pb2.GetChatSessionRequest(name="sessions/not a session")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await planner.stub.GetChatSession(request, metadata=planner.md())
    assert reason(caught.value) == "VALIDATION_FAILED"


@pytest.mark.asyncio
async def test_a_chat_jobs_history_replays_deterministically(
    planner: Planner, temporal_client: Client
) -> None:
    """The chat steps issue the same commands when replayed (no clock, no randomness, no I/O
    in workflow code)."""
    job = await _run(planner, _chat("replayed", "hello there", system="Be brief."))
    wid = JobRef.from_name(planner.client_id, job.name).workflow_id
    history = await temporal_client.get_workflow_handle(wid).fetch_history()

    replayer = Replayer(workflows=[JobWorkflow], interceptors=[TracingInterceptor()])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
