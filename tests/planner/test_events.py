"""EventLog against a real valkey-server: append, replay from a cursor, gaps, heartbeats."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2
from switchboard.planner import events
from switchboard.planner.errors import InvalidCursor
from switchboard.planner.events import EventLog

from .conftest import Infra

WAIT_S = 10.0


def _wid() -> str:
    return f"client-a/j-{uuid.uuid4().hex[:12]}"


def _state(wid: str, state: str) -> events_pb2.JobEvent:
    job = "jobs/" + wid.rsplit("/", 1)[1]
    return events_pb2.JobEvent(job=job, state_changed=events_pb2.StateChanged(state=state))


def _token(wid: str, index: int) -> events_pb2.JobEvent:
    job = "jobs/" + wid.rsplit("/", 1)[1]
    return events_pb2.JobEvent(job=job, token=events_pb2.TokenDelta(text=f"t{index}", index=index))


async def _all(watch: AsyncIterator[events_pb2.JobEvent]) -> list[events_pb2.JobEvent]:
    async with asyncio.timeout(WAIT_S):
        return [event async for event in watch]


async def _lifecycle(log: EventLog, wid: str, token_count: int = 2) -> list[str]:
    cursors = [await log.append_state(wid, _state(wid, "QUEUED"))]
    cursors.append(await log.append_state(wid, _state(wid, "RUNNING")))
    for index in range(token_count):
        cursors.append(await log.append(wid, _token(wid, index)))
    cursors.append(await log.append_state(wid, _state(wid, "SUCCEEDED")))
    return cursors


@pytest.mark.asyncio
async def test_events_round_trip_with_cursors_and_end_after_terminal(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client), _wid()
    cursors = await _lifecycle(log, wid)

    seen = await _all(log.watch(wid, ""))

    assert [e.cursor for e in seen] == cursors
    assert [e.WhichOneof("payload") for e in seen] == [
        "state_changed", "state_changed", "token", "token", "state_changed",
    ]  # fmt: skip
    assert all(e.job == "jobs/" + wid.rsplit("/", 1)[1] for e in seen)
    assert seen[3].token.text == "t1"


@pytest.mark.asyncio
async def test_replay_starts_after_the_cursor(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client), _wid()
    cursors = await _lifecycle(log, wid)

    seen = await _all(log.watch(wid, cursors[2]))

    assert [e.cursor for e in seen] == cursors[3:]


@pytest.mark.asyncio
async def test_a_state_is_logged_once_and_terminal_logs_expire(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client, terminal_ttl_seconds=600), _wid()
    first = await log.append_state(wid, _state(wid, "QUEUED"))
    assert await log.append_state(wid, _state(wid, "QUEUED")) == first
    assert await valkey_client.ttl(events.stream_key(wid)) > 600  # the long open-log TTL
    assert await log.terminal_cursor(wid) is None

    done = await log.append_state(wid, _state(wid, "CANCELLED"))
    assert await log.append_state(wid, _state(wid, "CANCELLED")) == done  # a retried publish

    assert await valkey_client.xlen(events.stream_key(wid)) == 2
    assert 0 < await valkey_client.ttl(events.stream_key(wid)) <= 600
    assert await log.terminal_cursor(wid) == done


@pytest.mark.asyncio
async def test_a_trimmed_log_starts_with_a_gap(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client), _wid()
    cursors = await _lifecycle(log, wid, token_count=4)  # 7 entries
    await valkey_client.xtrim(events.stream_key(wid), maxlen=3, approximate=False)

    seen = await _all(log.watch(wid, cursors[1]))

    assert seen[0].HasField("gap") and seen[0].cursor == ""
    assert seen[0].gap.first_available_cursor == cursors[4]
    assert [e.cursor for e in seen[1:]] == cursors[4:]
    # A cursor at or after the oldest stored entry lost nothing.
    assert not (await _all(log.watch(wid, cursors[4])))[0].HasField("gap")


@pytest.mark.asyncio
async def test_malformed_cursor_is_invalid(valkey_client: Valkey) -> None:
    log = EventLog(valkey_client)
    for cursor in ("abc", "1-", "-1", "1-2-3", "1.5-0"):
        with pytest.raises(InvalidCursor):
            await anext(log.watch(_wid(), cursor))


@pytest.mark.asyncio
async def test_silence_brings_heartbeats_without_cursor(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client, heartbeat_seconds=0.2), _wid()
    await log.append_state(wid, _state(wid, "QUEUED"))
    watch = log.watch(wid, "")
    async with asyncio.timeout(WAIT_S):
        first, second, third = [await anext(watch) for _ in range(3)]
        await watch.aclose()
    assert first.state_changed.state == "QUEUED"
    assert second.HasField("heartbeat") and third.HasField("heartbeat")
    assert second.cursor == "" and second.job == first.job


@pytest.mark.asyncio
async def test_live_events_reach_a_waiting_watcher(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client), _wid()
    watcher = asyncio.create_task(_all(log.watch(wid, "")))
    await asyncio.sleep(0.2)  # the watcher is blocked in XREAD on a log that does not exist yet
    cursors = await _lifecycle(log, wid)
    assert [e.cursor for e in await watcher] == cursors


def test_cursor_order_is_numeric() -> None:
    assert events.parse_cursor("") == (0, 0)
    assert events.parse_cursor("10-0") > events.parse_cursor("9-5")
    assert events.parse_cursor("5-10") > events.parse_cursor("5-9")


@pytest.mark.asyncio
async def test_an_abandoned_watch_leaves_the_client_usable(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client, heartbeat_seconds=30), _wid()
    await log.append_state(wid, _state(wid, "QUEUED"))
    watcher = asyncio.create_task(_all(log.watch(wid, "")))
    await asyncio.sleep(0.3)  # now blocked in XREAD, waiting for a second event
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher

    # A connection left mid-XREAD must not hand its late reply to the next command.
    cursors = await _lifecycle(log, _wid())
    assert len(cursors) == 5
    info = await valkey_client.info("clients")
    assert int(info["blocked_clients"]) == 0


@pytest.mark.asyncio
async def test_an_idle_watch_outlives_the_clients_socket_timeout(infra: Infra) -> None:
    client = Valkey.from_url(f"valkey://{infra.valkey}/0", socket_timeout=0.5)
    try:
        log, wid = EventLog(client, heartbeat_seconds=1.5), _wid()
        await log.append_state(wid, _state(wid, "QUEUED"))
        watch = log.watch(wid, "")
        async with asyncio.timeout(WAIT_S):
            queued, heartbeat = await anext(watch), await anext(watch)
            await watch.aclose()
        assert queued.HasField("state_changed") and heartbeat.HasField("heartbeat")
    finally:
        await client.aclose()
