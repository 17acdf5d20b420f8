"""Chat sessions against a real valkey-server: the window (last k messages, TTL refreshed on
use), the durable transcript, per-client sessions, and `append_turn` appending once per job
however often Temporal retries it (run through Temporal's ActivityEnvironment)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from google.protobuf import timestamp_pb2
from temporalio.testing import ActivityEnvironment
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import jobs_pb2
from switchboard.common.errors import Unavailable
from switchboard.planner.shared.config import WorkerSettings
from switchboard.planner.stores.chats import ChatSessions
from switchboard.planner.work.chat import ChatActivities

from ..stack import free_ports

ChatTurn = jobs_pb2.ChatTurn


def _session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


def _turns(job: str, question: str, answer: str, second: int = 1) -> list[ChatTurn]:
    asked = timestamp_pb2.Timestamp(seconds=1_700_000_000 + second, nanos=5)
    answered = timestamp_pb2.Timestamp(seconds=1_700_000_000 + second + 1)
    return [
        ChatTurn(role="user", content=question, create_time=asked, job=f"jobs/{job}"),
        ChatTurn(role="assistant", content=answer, create_time=answered, job=f"jobs/{job}"),
    ]


async def _talk(sessions: ChatSessions, client: str, session: str, turns: int) -> None:
    for n in range(turns):
        await sessions.append(client, session, _turns(f"j-{n}", f"q{n}", f"a{n}", second=n * 2))


@pytest.mark.asyncio
async def test_the_window_holds_the_last_k_messages_oldest_first(valkey_client: Valkey) -> None:
    sessions, session = ChatSessions(valkey_client, window=4), _session()
    assert await sessions.window("acme", session) == []

    await _talk(sessions, "acme", session, turns=3)

    window = await sessions.window("acme", session)
    assert [(t.role, t.content) for t in window] == [
        ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"),
    ]  # fmt: skip
    assert window[2].job == "jobs/j-2"


@pytest.mark.asyncio
async def test_the_transcript_keeps_everything_without_ttl_and_the_window_expires(
    valkey_client: Valkey,
) -> None:
    sessions, session = ChatSessions(valkey_client, window=2, ttl_seconds=60), _session()
    await _talk(sessions, "acme", session, turns=3)

    transcript = await sessions.transcript("acme", session)
    assert [t.content for t in transcript] == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert transcript[0] == _turns("j-0", "q0", "a0", second=0)[0]  # time, job, role intact
    keys = {key.decode(): await valkey_client.ttl(key) for key in await _keys(valkey_client)}
    window_key = next(k for k in keys if session in k and k.endswith(":window"))
    transcript_key = next(k for k in keys if session in k and k.endswith(":transcript"))
    assert 0 < keys[window_key] <= 60
    assert keys[transcript_key] == -1  # no TTL: durable

    await valkey_client.expire(window_key, 5)
    await sessions.window("acme", session)  # a load refreshes the TTL
    assert await valkey_client.ttl(window_key) > 5


async def _keys(client: Valkey) -> list[bytes]:
    return [key async for key in client.scan_iter(match="sb:chat:*")]


@pytest.mark.asyncio
async def test_an_append_repeated_for_one_job_is_stored_once(valkey_client: Valkey) -> None:
    sessions, session = ChatSessions(valkey_client), _session()
    turns = _turns("j-1", "hello", "hi there")
    first = await sessions.append("acme", session, turns)
    again = await sessions.append("acme", session, turns)

    assert first == again
    assert len(await sessions.transcript("acme", session)) == 2
    assert len(await sessions.window("acme", session)) == 2


@pytest.mark.asyncio
async def test_sessions_belong_to_their_client(valkey_client: Valkey) -> None:
    sessions, session = ChatSessions(valkey_client), _session()
    await _talk(sessions, "acme", session, turns=1)

    assert await sessions.transcript("beta", session) == []
    assert await sessions.window("beta", session) == []
    assert len(await sessions.transcript("acme", session)) == 2


@pytest.mark.asyncio
async def test_a_long_transcript_is_read_whole_in_order(valkey_client: Valkey) -> None:
    sessions, session = ChatSessions(valkey_client), _session()
    await _talk(sessions, "acme", session, turns=260)  # 520 entries: more than one page

    transcript = await sessions.transcript("acme", session)
    assert len(transcript) == 520
    assert [t.content for t in transcript[-2:]] == ["q259", "a259"]
    assert [t.content for t in transcript[498:502]] == ["q249", "a249", "q250", "a250"]


@pytest.mark.asyncio
async def test_an_unreachable_store_is_unavailable() -> None:
    (port,) = free_ports(1)
    client = Valkey.from_url(f"valkey://127.0.0.1:{port}/0")
    try:
        with pytest.raises(Unavailable):
            await ChatSessions(client).window("acme", _session())
    finally:
        await client.aclose()


def test_a_window_needs_at_least_one_message(valkey_client: Valkey) -> None:
    with pytest.raises(ValueError, match="at least one"):
        ChatSessions(valkey_client, window=0)


def _in_job(client_id: str, job_id: str, attempt: int = 1) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=f"{client_id}/{job_id}", attempt=attempt)
    return env


@pytest.mark.asyncio
async def test_append_turn_retried_by_temporal_appends_once_for_the_jobs_client(
    valkey_client: Valkey,
) -> None:
    activities, session = ChatActivities(ChatSessions(valkey_client)), _session()
    turns = jobs_pb2.ChatSession(name=f"sessions/{session}", turns=_turns("j-7", "q", "a"))

    await _in_job("acme", "j-7").run(activities.append_turn, turns)
    await _in_job("acme", "j-7", attempt=2).run(activities.append_turn, turns)  # a retry

    loaded = await _in_job("acme", "j-8").run(activities.load_session, session)
    assert loaded.name == f"sessions/{session}"
    assert [t.content for t in loaded.turns] == ["q", "a"]
    elsewhere = await _in_job("beta", "j-9").run(activities.load_session, session)
    assert list(elsewhere.turns) == []


def test_the_worker_reads_its_chat_window_settings() -> None:
    default = WorkerSettings.from_env({})
    assert (default.chat_window_messages, default.chat_window_ttl_seconds) == (10, 1800)
    tuned = WorkerSettings.from_env(
        {
            "SWITCHBOARD_WORKER_CHAT_WINDOW_MESSAGES": "4",
            "SWITCHBOARD_WORKER_CHAT_WINDOW_TTL_SECONDS": "60",
        }
    )
    assert (tuned.chat_window_messages, tuned.chat_window_ttl_seconds) == (4, 60)
