"""EventLog against a real valkey-server: append, replay from a cursor, gaps, heartbeats, and
the one shared reader (hub) that live watchers follow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import pytest
from valkey.asyncio import Valkey

from switchboard.api.jobs.v1 import events_pb2
from switchboard.common.jobref import JobRef
from switchboard.planner.shared.errors import EventLogUnavailable, InvalidCursor
from switchboard.planner.stores import entries, events
from switchboard.planner.stores.events import EventLog

from .conftest import Infra
from .support import Planner

WAIT_S = 10.0


def _wid() -> JobRef:
    return JobRef("client-a", f"j-{uuid.uuid4().hex[:12]}")


def _state(wid: JobRef, state: str) -> events_pb2.JobEvent:
    job = "jobs/" + wid.id
    return events_pb2.JobEvent(job=job, state_changed=events_pb2.StateChanged(state=state))


def _token(wid: JobRef, index: int) -> events_pb2.JobEvent:
    job = "jobs/" + wid.id
    return events_pb2.JobEvent(job=job, token=events_pb2.TokenDelta(text=f"t{index}", index=index))


async def _all(watch: AsyncIterator[events_pb2.JobEvent]) -> list[events_pb2.JobEvent]:
    async with asyncio.timeout(WAIT_S):
        return [event async for event in watch]


async def _lifecycle(log: EventLog, wid: JobRef, token_count: int = 2) -> list[str]:
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
    assert all(e.job == "jobs/" + wid.id for e in seen)
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
async def test_an_event_appended_once_per_token_lands_once(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client), _wid()
    progress = events_pb2.JobEvent(job="jobs/" + wid.id, progress=events_pb2.Progress(stage="a"))
    first = await log.append_once(wid, "run-1/7", progress)
    assert await log.append_once(wid, "run-1/7", progress) == first  # the same publish again
    other = await log.append_once(wid, "run-1/8", progress)  # another publish of the same event

    stored = await valkey_client.xrange(events.stream_key(wid))
    assert [entries.text(entry_id) for entry_id, _ in stored] == [first, other]


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


TOP = 2**64 - 1  # the largest part of a Valkey stream id


@pytest.mark.asyncio
async def test_cursor_at_the_top_of_valkeys_range_is_read_by_valkey(
    valkey_client: Valkey,
) -> None:
    log, wid = EventLog(valkey_client, heartbeat_seconds=0.1), _wid()
    await log.append_state(wid, _state(wid, "QUEUED"))
    assert events.parse_cursor(f"{TOP}-{TOP}") == (TOP, TOP)
    watch = log.watch(wid, f"{TOP}-{TOP}")
    async with asyncio.timeout(WAIT_S):
        first = await anext(watch)  # nothing after it: Valkey took the id, silence follows
        await watch.aclose()
    assert first.HasField("heartbeat")


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


# --- one shared reader per process (hub.StreamHub) -----------------------------------------


async def _blocked_readers(client: Valkey) -> int:
    """Connections blocked in XREAD right now."""
    listed = await client.client_list()
    return sum(1 for c in listed if c.get("cmd") == "xread" and "b" in str(c.get("flags", "")))


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(int(WAIT_S / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {WAIT_S} s")


@pytest.mark.asyncio
async def test_many_watchers_of_one_job_share_one_blocked_reader(valkey_client: Valkey) -> None:
    log, wid = EventLog(valkey_client), _wid()
    first = await log.append_state(wid, _state(wid, "QUEUED"))
    watchers = [asyncio.create_task(_all(log.watch(wid, ""))) for _ in range(20)]

    async def all_following() -> bool:
        return log.hub.followed == 1 and await _blocked_readers(valkey_client) == 1

    await _until(all_following)
    cursors = [first, *(await _lifecycle(log, wid, token_count=30))[1:]]

    for seen in await asyncio.gather(*watchers):
        assert [e.cursor for e in seen] == cursors  # each event once, in order
    assert log.hub.readers_started == 1
    assert log.hub.reads < 40  # reads batch what arrived meanwhile; never one per watcher
    await _until(lambda: _none_blocked(valkey_client))  # the last watcher stopped the reader


async def _none_blocked(client: Valkey) -> bool:
    return await _blocked_readers(client) == 0


@pytest.mark.asyncio
async def test_watchers_joining_mid_stream_get_exactly_what_follows_their_cursor(
    valkey_client: Valkey,
) -> None:
    """Watchers join while the log grows: the replay hands over to the live feed with no
    gap and no duplicate, whatever the timing."""
    log, wid = EventLog(valkey_client), _wid()
    cursors = [await log.append_state(wid, _state(wid, "QUEUED"))]
    early = asyncio.create_task(_all(log.watch(wid, "")))
    joined: list[tuple[int, asyncio.Task[list[events_pb2.JobEvent]]]] = []
    for index in range(200):
        cursors.append(await log.append(wid, _token(wid, index)))
        if index % 20 == 7:  # from the current end, and from an older cursor
            for at in (len(cursors) - 1, len(cursors) // 2):
                joined.append((at, asyncio.create_task(_all(log.watch(wid, cursors[at])))))
        if index % 10 == 0:
            await asyncio.sleep(0)  # let watchers run between appends
    cursors.append(await log.append_state(wid, _state(wid, "SUCCEEDED")))

    assert [e.cursor for e in await early] == cursors
    for at, task in joined:
        assert [e.cursor for e in await task] == cursors[at + 1 :]
    assert log.hub.readers_started == 1


@pytest.mark.asyncio
async def test_a_slow_watcher_rereads_the_log_without_stalling_the_others(
    valkey_client: Valkey,
) -> None:
    log, wid = EventLog(valkey_client, queue_limit=4), _wid()
    await log.append_state(wid, _state(wid, "QUEUED"))
    slow = log.watch(wid, "")
    async with asyncio.timeout(WAIT_S):
        seen = [await anext(slow)]  # subscribed, then reads nothing for a while
    fast = asyncio.create_task(_all(log.watch(wid, "")))
    await _until(lambda: _blocked(valkey_client))
    cursors = [seen[0].cursor, *(await _lifecycle(log, wid, token_count=40))[1:]]

    assert [e.cursor for e in await fast] == cursors  # done while the slow one still waits
    assert log.hub.overflows >= 1
    seen += await _all(slow)
    assert [e.cursor for e in seen] == cursors


async def _blocked(client: Valkey) -> bool:
    return await _blocked_readers(client) > 0


@pytest.mark.asyncio
async def test_a_reader_stops_with_its_last_watcher_and_a_new_one_starts(
    valkey_client: Valkey,
) -> None:
    log, wid = EventLog(valkey_client, heartbeat_seconds=30), _wid()
    (watch,) = await _watching(log, wid, valkey_client, count=1)
    await watch.aclose()
    assert await _blocked_readers(valkey_client) == 0  # released before aclose returned

    other = _wid()
    cursors = await _lifecycle(log, other)
    assert [e.cursor for e in await _all(log.watch(other, ""))] == cursors
    assert log.hub.readers_started == 2


@pytest.mark.asyncio
async def test_a_lost_reader_connection_reconnects_and_every_watcher_goes_on(
    valkey_client: Valkey,
) -> None:
    log, wid = EventLog(valkey_client, heartbeat_seconds=30), _wid()
    watchers = await _watching(log, wid, valkey_client, count=3)
    reader_id = await _kill_reader(log, valkey_client)
    await _until(lambda: _reconnected(log, reader_id))

    # The same reader, on a new connection, reads on from where it was: nothing is lost.
    await log.append(wid, _token(wid, 0))
    await log.append_state(wid, _state(wid, "CANCELLED"))
    for watch in watchers:
        rest = await _all(watch)
        assert [e.token.index for e in rest if e.HasField("token")] == [0]
        assert states_of(rest) == ["CANCELLED"]
    assert (log.hub.readers_started, log.hub.reconnects) == (1, 1)


@pytest.mark.asyncio
async def test_a_reader_that_cannot_reconnect_in_time_fails_every_watcher_as_unavailable(
    valkey_client: Valkey,
) -> None:
    log, wid = EventLog(valkey_client, heartbeat_seconds=30, reader_outage_seconds=0), _wid()
    watchers = await _watching(log, wid, valkey_client, count=2)
    await _kill_reader(log, valkey_client)

    for watch in watchers:
        with pytest.raises(EventLogUnavailable):
            async with asyncio.timeout(WAIT_S):
                await anext(watch)
    # The next watcher gets a fresh reader.
    await log.append_state(wid, _state(wid, "CANCELLED"))
    assert states_of(await _all(log.watch(wid, ""))) == ["QUEUED", "CANCELLED"]
    assert log.hub.readers_started == 2


async def _watching(
    log: EventLog, wid: JobRef, client: Valkey, count: int
) -> list[AsyncGenerator[events_pb2.JobEvent, None]]:
    """`count` watches of a QUEUED job, each past that first event, once the one reader
    they share blocks in XREAD."""
    await log.append_state(wid, _state(wid, "QUEUED"))
    watchers = [log.watch(wid, "") for _ in range(count)]
    async with asyncio.timeout(WAIT_S):
        for watch in watchers:
            await anext(watch)
    await _until(lambda: _blocked(client))
    return watchers


async def _kill_reader(log: EventLog, client: Valkey) -> int:
    """Kills the shared reader's connection, as a Valkey restart would; the reader's id."""
    reader_id = log.hub.reader_id
    assert reader_id is not None
    await client.client_kill_filter(_id=str(reader_id))
    return reader_id


async def _reconnected(log: EventLog, old_id: int) -> bool:
    return log.hub.reader_id not in (None, old_id)


def states_of(seen: list[events_pb2.JobEvent]) -> list[str]:
    return [e.state_changed.state for e in seen if e.HasField("state_changed")]


@pytest.mark.asyncio
async def test_watch_job_calls_on_one_job_share_the_planners_one_reader(planner: Planner) -> None:
    job = await planner.create(model="slow")  # a token every 50 ms until cancelled
    watches = [asyncio.create_task(planner.watch(job.name)) for _ in range(6)]

    samples = []
    for _ in range(30):  # while tokens stream to six watchers
        samples.append(await _blocked_readers(planner.valkey))
        await asyncio.sleep(0.05)
    await planner.cancel(job.name)
    seen = await asyncio.gather(*watches)

    assert max(samples) == 1  # one XREAD for all of them, never one per watcher
    cursors = [[e.cursor for e in events if e.cursor] for events in seen]
    assert all(c == cursors[0] for c in cursors) and len(cursors[0]) > 10
    assert states_of(seen[0])[-1] == "CANCELLED"


@pytest.mark.asyncio
async def test_a_watcher_that_falls_behind_the_trimmed_log_gets_a_gap_not_a_silent_jump(
    valkey_client: Valkey,
) -> None:
    log, wid = EventLog(valkey_client, maxlen=20, queue_limit=4), _wid()
    await log.append_state(wid, _state(wid, "QUEUED"))
    slow = log.watch(wid, "")
    async with asyncio.timeout(WAIT_S):
        seen = [await anext(slow)]
    cursors = [seen[0].cursor, *(await _lifecycle(log, wid, token_count=400))[1:]]

    seen += await _all(slow)

    assert log.hub.overflows >= 1
    gap = next(e for e in seen if e.HasField("gap"))
    after_gap = [e.cursor for e in seen[seen.index(gap) + 1 :]]
    assert after_gap == cursors[cursors.index(gap.gap.first_available_cursor) :]
    assert len(after_gap) < len(cursors) - 1  # the trimmed ones are gone, and said so


def _segments(seen: list[events_pb2.JobEvent]) -> list[list[str]]:
    """The cursors seen, split at each gap event."""
    segments: list[list[str]] = [[]]
    for event in seen:
        if event.HasField("gap"):
            segments.append([])
        elif event.cursor:
            segments[-1].append(event.cursor)
    return segments


@pytest.mark.asyncio
async def test_a_replay_trimmed_between_its_batches_says_gap(valkey_client: Valkey) -> None:
    """A long replay read by a slow client: the log is trimmed between two of its XRANGE
    batches. Every run of events between gaps is a contiguous stretch of the log."""
    wid = _wid()
    keeping, trimming = EventLog(valkey_client, maxlen=100_000), EventLog(valkey_client, maxlen=20)
    cursors = [await keeping.append_state(wid, _state(wid, "RUNNING"))]
    cursors += [await keeping.append(wid, _token(wid, i)) for i in range(events.REPLAY_BATCH + 100)]
    watch = keeping.watch(wid, "")
    async with asyncio.timeout(WAIT_S):
        seen = [await anext(watch) for _ in range(10)]  # inside the first batch
    cursors += [await trimming.append(wid, _token(wid, i)) for i in range(1000)]
    cursors.append(await keeping.append_state(wid, _state(wid, "SUCCEEDED")))

    seen += await _all(watch)

    segments = _segments(seen)
    assert len(segments) == 2 and segments[0][:10] == cursors[:10]  # one gap, after batch 1
    assert segments[0] == cursors[: events.REPLAY_BATCH]
    first = cursors.index(segments[1][0])
    assert segments[1] == cursors[first:] and first > events.REPLAY_BATCH
