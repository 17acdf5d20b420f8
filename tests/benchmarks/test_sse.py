"""The REST jobs benchmark's pure parts: SSE frames as the edge writes them, the cursor's
storing time, the ratios the tables print, and the closed loop's concurrency."""

from __future__ import annotations

import asyncio
import math

import pytest
from google.protobuf import timestamp_pb2

from benchmarks.rest_paths import closed_loop
from benchmarks.sse import Frame, FrameReader, added, is_terminal, ratio, since_stored_ms, stored_ms
from switchboard.api.jobs.v1 import events_pb2
from switchboard.edge import sse


def frames(text: str) -> list[Frame]:
    reader = FrameReader()
    read = (reader.feed(line) for line in text.splitlines())
    return [frame for frame in read if frame is not None]


def test_reads_the_frames_the_edge_writes() -> None:
    stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    token = events_pb2.JobEvent(
        cursor="1700000000123-0", job="jobs/a", create_time=stamp,
        token=events_pb2.TokenDelta(text="one\ntwo", index=0),
    )  # fmt: skip
    done = events_pb2.JobEvent(
        cursor="1700000000456-3", job="jobs/a",
        state_changed=events_pb2.StateChanged(state="SUCCEEDED"),
    )  # fmt: skip
    stream = sse.RETRY + sse.event_frame(token) + sse.HEARTBEAT + sse.event_frame(done)
    read = frames(stream.decode())
    assert [f.event for f in read] == ["token", "state_changed"]
    assert read[0].json()["token"]["text"] == "one\ntwo"
    assert not is_terminal(read[0].json())
    assert read[1].id == "1700000000456-3"
    assert is_terminal(read[1].json())
    assert stored_ms(read[1].json()["cursor"]) == 1_700_000_000_456


def test_frames_by_the_event_stream_rules() -> None:
    text = "data: a\ndata:b\n\n: comment\nevent: only-event\n\nid: 7\ndata: {}\n\n"
    assert frames(text) == [Frame("message", "", "a\nb"), Frame("message", "7", "{}")]
    assert frames("data: [DONE]\n") == []  # no blank line yet: not dispatched


@pytest.mark.parametrize("state", ["RUNNING", "QUEUED", "CANCELLING", ""])
def test_only_final_states_are_terminal(state: str) -> None:
    assert not is_terminal({"stateChanged": {"state": state}})
    assert not is_terminal({"token": {"text": "x"}})


@pytest.mark.parametrize("cursor", ["", "12", "a-1", "12-", "-3", "1.5-2"])
def test_a_cursor_that_is_no_entry_id_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="stream entry id"):
        stored_ms(cursor)


def test_since_stored_counts_from_the_entry_ids_milliseconds() -> None:
    assert since_stored_ms("1000-5", 1_012_500_000) == pytest.approx(12.5)


def test_ratio_and_added() -> None:
    assert ratio(30.0, 10.0) == "3.00x"
    assert ratio(187.0, 14.0) == "13.4x"
    assert ratio(5.0, 0.0) == ratio(math.nan, 1.0) == ratio(1.0, math.nan) == ""
    assert added(187.0, 14.0) == "+173.0"
    assert added(2.0, 3.5) == "-1.5"
    assert added(math.nan, 1.0) == ""


def test_closed_loop_keeps_concurrency_and_times_only_the_measured_calls() -> None:
    running, most, calls = 0, 0, 0

    async def once() -> None:
        nonlocal running, most, calls
        running, calls = running + 1, calls + 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    loop = asyncio.run(closed_loop(4, 20, once))
    assert most == 4
    assert calls == 20 + 2 * 4  # the warm-up is run, not counted
    assert len(loop.ms) == 20
    assert min(loop.ms) >= 10
    assert loop.seconds >= 5 * 0.01
    assert loop.per_s == round(20 / loop.seconds, 1)
