"""The shared WatchJob hub (hub.py, subscription.py) against a live stand-in planner on a
real grpc.aio server.

The stand-in streams a log the test appends to while watches are open, and counts its
WatchJob calls, the open ones and the cancelled ones: N subscribers must cost one call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from switchboard.api.jobs.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, pipelines_pb2
from switchboard.common.errors import AlreadyExists, NotFound, SwitchboardError, Unavailable
from switchboard.common.grpcserver import ServiceInterceptor
from switchboard.common.jobstates import is_terminal
from switchboard.edge import hub as hub_module
from switchboard.edge import subscription as subscription_module
from switchboard.edge.hub import CANCEL_LABEL, Hub
from switchboard.edge.planner import Planner
from switchboard.edge.sse import Tick
from switchboard.edge.subscription import Subscription

from .conftest import CLIENT, WAIT_SECONDS, StandInPlanner, edge_client
from .test_sse import Reader

Context = grpc.aio.ServicerContext[Any, Any]
JOB = "jobs/job-1"
METADATA = (("x-client-id", CLIENT), ("x-job-id", "job-1"))


def state(n: int, name: str, job: str = JOB) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(
        cursor=f"{n}-0", job=job, state_changed=events_pb2.StateChanged(state=name)
    )


def token(n: int, job: str = JOB) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(cursor=f"{n}-0", job=job, token=events_pb2.TokenDelta(text=f"t{n}"))


def tokens(first: int, last: int) -> list[events_pb2.JobEvent]:
    return [token(n) for n in range(first, last + 1)]


def cursors(first: int, last: int) -> list[str]:
    return [f"{n}-0" for n in range(first, last + 1)]


@dataclass
class LivePlanner(StandInPlanner):
    """The stand-in JobService with one job log, streamed live to every WatchJob as it grows."""

    log: list[events_pb2.JobEvent] = field(default_factory=list)
    watch_calls: list[jobs_pb2.WatchJobRequest] = field(default_factory=list)
    open_watches: int = 0
    cancelled_watches: int = 0
    creates: list[jobs_pb2.CreateJobRequest] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    # Once the log is streamed, open watches fail with this.
    fail_with: SwitchboardError | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, *events: events_pb2.JobEvent) -> None:
        self.log.extend(events)
        self.wake()

    def fail(self, error: SwitchboardError) -> None:
        self.fail_with = error
        self.wake()

    def wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def find(self, name: str) -> jobs_pb2.Job:
        if name not in self.jobs:
            raise NotFound(f"{name} does not exist", reason="JOB_NOT_FOUND")
        return self.jobs[name]

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[events_pb2.JobEvent]:
        self.watch_calls.append(request)
        self.find(request.name)
        after = (
            [e.cursor for e in self.log].index(request.after_cursor) + 1
            if (request.after_cursor)
            else 0
        )
        self.open_watches += 1
        try:
            async for event in self._follow(after):
                yield event
        except asyncio.CancelledError:
            self.cancelled_watches += 1
            raise
        finally:
            self.open_watches -= 1

    async def _follow(self, position: int) -> AsyncIterator[events_pb2.JobEvent]:
        while True:
            while position < len(self.log):
                event = self.log[position]
                position += 1
                yield event
                if is_terminal(event):
                    return
            if self.fail_with is not None:
                raise self.fail_with
            await self._changed.wait()

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> jobs_pb2.Job:
        self.creates.append(request)
        key = request.idempotency_key
        job_id = f"idem-{hashlib.sha256(key.encode()).hexdigest()[:8]}" if key else "job-1"
        name = f"jobs/{job_id}"
        if key and name in self.jobs:
            first = self.creates[0].job
            if first != request.job:
                raise AlreadyExists("key used for another request", reason="IDEMPOTENCY_KEY_REUSED")
            return self.jobs[name]
        job = jobs_pb2.Job(name=name, state=jobs_pb2.Job.QUEUED, client=CLIENT)
        job.MergeFrom(request.job)
        self.jobs[name] = job
        return job

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> jobs_pb2.Job:
        self.gets.append(request.name)
        return self.find(request.name)

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> jobs_pb2.Job:
        self.cancels.append(request.name)
        job = self.find(request.name)
        job.state = jobs_pb2.Job.CANCELLING
        return job


def running_job(labels: dict[str, str] | None = None) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        name=JOB,
        state=jobs_pb2.Job.RUNNING,
        pipeline="generate",
        input=pipelines_pb2.JobInput(
            generate=pipelines_pb2.GenerateInput(model="test-streamer", prompt="hi")
        ),
        client=CLIENT,
        labels=labels or {},
    )


@asynccontextmanager
async def serving(servicer: LivePlanner) -> AsyncIterator[LivePlanner]:
    """`servicer` on a real grpc.aio server on a free port (its `address`)."""
    server = grpc.aio.server(interceptors=[ServiceInterceptor()])
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    servicer.address = f"127.0.0.1:{port}"
    try:
        yield servicer
    finally:
        await server.stop(None)


@pytest_asyncio.fixture
async def live() -> AsyncIterator[LivePlanner]:
    servicer = LivePlanner()
    servicer.jobs[JOB] = running_job()
    async with serving(servicer):
        yield servicer


@pytest_asyncio.fixture
async def hub(live: LivePlanner) -> AsyncIterator[Hub]:
    planner = Planner(live.address)
    shared = Hub(planner)
    try:
        yield shared
    finally:
        await shared.close()
        await planner.close()


@pytest_asyncio.fixture
async def live_client(live: LivePlanner) -> AsyncIterator[httpx.AsyncClient]:
    async with edge_client(live.address) as http:
        yield http


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Polls `check` (state of another server, no event to wait on) within WAIT_SECONDS."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                if check():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"not within {WAIT_SECONDS} s: {what}")


async def read(subscription: Subscription, count: int | None = None) -> list[str]:
    """Cursors of the events it gets, to the end or until `count` of them."""
    seen: list[str] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while count is None or len(seen) < count:
            item = await subscription.next(0.2)
            if item is Tick.END:
                break
            if isinstance(item, events_pb2.JobEvent) and item.cursor:
                seen.append(item.cursor)
    return seen


def reading(subscription: Subscription) -> asyncio.Task[list[str]]:
    return asyncio.ensure_future(read(subscription))


@pytest.mark.asyncio
async def test_many_subscribers_share_one_upstream_and_each_get_every_event_once(
    live: LivePlanner, hub: Hub
) -> None:
    live.append(state(1, "QUEUED"))
    subscriptions = [hub.subscribe(CLIENT, JOB, "", METADATA) for _ in range(5)]
    readers = [reading(s) for s in subscriptions]
    live.append(state(2, "RUNNING"), *tokens(3, 40))
    live.append(state(41, "SUCCEEDED"))
    results = await asyncio.gather(*readers)
    assert all(r == cursors(1, 41) for r in results)
    assert live.watch_calls == [jobs_pb2.WatchJobRequest(name=JOB)]
    await eventually(lambda: hub.channels() == 0, "the ended channel is forgotten")


@pytest.mark.asyncio
async def test_late_joiner_from_a_buffered_cursor_gets_exactly_what_it_missed(
    live: LivePlanner, hub: Hub
) -> None:
    first = hub.subscribe(CLIENT, JOB, "", METADATA)
    live.append(state(1, "RUNNING"), *tokens(2, 10))
    assert await read(first, 10) == cursors(1, 10)

    late = hub.subscribe(CLIENT, JOB, "6-0", METADATA)
    from_start = hub.subscribe(CLIENT, JOB, "", METADATA)
    readers = [reading(s) for s in (first, late, from_start)]
    live.append(*tokens(11, 20), state(21, "SUCCEEDED"))
    rest, missed, everything = await asyncio.gather(*readers)
    assert rest == cursors(11, 21)
    assert missed == cursors(7, 21)
    assert everything == cursors(1, 21)
    assert len(live.watch_calls) == 1


@pytest.mark.asyncio
async def test_cursor_older_than_the_buffer_replays_then_switches_to_the_shared_feed(
    live: LivePlanner, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "BUFFER_EVENTS", 4)
    first = hub.subscribe(CLIENT, JOB, "", METADATA)
    live.append(state(1, "RUNNING"), *tokens(2, 10))
    assert await read(first, 10) == cursors(1, 10)  # the buffer now holds 7..10 only

    late = hub.subscribe(CLIENT, JOB, "2-0", METADATA)
    assert late.replaying
    assert await read(late, 8) == cursors(3, 10)
    # Met the shared feed at 7-0: its own call is gone, the shared one stays.
    assert not late.replaying
    await eventually(lambda: live.open_watches == 1, "the replay call was cancelled")
    readers = [reading(first), reading(late)]
    live.append(*tokens(11, 15), state(16, "SUCCEEDED"))
    assert await asyncio.gather(*readers) == [cursors(11, 16), cursors(11, 16)]
    assert [c.after_cursor for c in live.watch_calls] == ["", "2-0"]


@pytest.mark.asyncio
async def test_slow_subscriber_does_not_stall_others_and_resyncs_by_its_own_replay(
    live: LivePlanner, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "BUFFER_EVENTS", 4)
    monkeypatch.setattr(subscription_module, "QUEUE_LIMIT", 8)
    fast = hub.subscribe(CLIENT, JOB, "", METADATA)
    slow = hub.subscribe(CLIENT, JOB, "", METADATA)
    live.append(state(1, "RUNNING"), *tokens(2, 30))
    assert await read(fast, 30) == cursors(1, 30)  # never waited for the slow one

    fast_rest = reading(fast)
    slow_all = reading(slow)
    await eventually(lambda: len(live.watch_calls) == 2, "the slow one replays")
    live.append(*tokens(31, 35), state(36, "SUCCEEDED"))
    assert await fast_rest == cursors(31, 36)
    assert await slow_all == cursors(1, 36)
    assert [c.after_cursor for c in live.watch_calls] == ["", ""]


@pytest.mark.asyncio
async def test_last_subscriber_leaving_cancels_the_upstream(live: LivePlanner, hub: Hub) -> None:
    live.append(state(1, "RUNNING"))
    one = hub.subscribe(CLIENT, JOB, "", METADATA)
    two = hub.subscribe(CLIENT, JOB, "", METADATA)
    assert await read(one, 1) == await read(two, 1) == ["1-0"]
    one.close(client_left=True)
    await asyncio.sleep(0.1)
    assert live.open_watches == 1 and live.cancelled_watches == 0  # two still watches
    two.close(client_left=False)
    await eventually(lambda: live.cancelled_watches == 1, "upstream cancelled")
    assert hub.channels() == 0
    assert live.open_watches == 0


@pytest.mark.asyncio
async def test_another_client_gets_its_own_upstream(live: LivePlanner, hub: Hub) -> None:
    live.append(state(1, "RUNNING"))
    mine = hub.subscribe(CLIENT, JOB, "", METADATA)
    theirs = hub.subscribe("other", JOB, "", (("x-client-id", "other"),))
    assert await read(mine, 1) == await read(theirs, 1) == ["1-0"]
    assert len(live.watch_calls) == 2 and hub.channels() == 2


@pytest.mark.asyncio
async def test_upstream_failure_reaches_every_subscriber(live: LivePlanner, hub: Hub) -> None:
    live.append(state(1, "RUNNING"))
    subscriptions = [hub.subscribe(CLIENT, JOB, "", METADATA) for _ in range(2)]
    for subscription in subscriptions:
        assert await read(subscription, 1) == ["1-0"]
    live.fail(Unavailable("event log unreachable", reason="EVENT_LOG_UNAVAILABLE"))
    for subscription in subscriptions:
        with pytest.raises(SwitchboardError) as failure:
            await read(subscription)
        assert failure.value.reason == "EVENT_LOG_UNAVAILABLE"


@pytest.mark.asyncio
async def test_missing_job_fails_the_first_read(live: LivePlanner, hub: Hub) -> None:
    subscription = hub.subscribe(CLIENT, "jobs/missing-1", "", METADATA)
    with pytest.raises(SwitchboardError) as failure:
        await subscription.next(WAIT_SECONDS)
    assert failure.value.reason == "JOB_NOT_FOUND"


async def _leave_early(live: LivePlanner, hub: Hub, *, client_left: bool) -> None:
    live.append(state(1, "RUNNING"))
    subscription = hub.subscribe(CLIENT, JOB, "", METADATA)
    assert await read(subscription, 1) == ["1-0"]
    subscription.close(client_left=client_left)


@pytest.mark.asyncio
async def test_cancel_on_disconnect_job_is_cancelled_when_its_last_client_leaves(
    live: LivePlanner, hub: Hub
) -> None:
    live.jobs[JOB] = running_job({CANCEL_LABEL: "true"})
    await _leave_early(live, hub, client_left=True)
    await eventually(lambda: live.cancels == [JOB], "CancelJob called")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("labels", "client_left", "looks_up"),
    [({}, True, True), ({CANCEL_LABEL: "true"}, False, False)],
    ids=["no-label", "edge-ended-the-stream"],
)
async def test_other_departures_do_not_cancel(
    live: LivePlanner, hub: Hub, labels: dict[str, str], client_left: bool, looks_up: bool
) -> None:
    live.jobs[JOB] = running_job(labels)
    await _leave_early(live, hub, client_left=client_left)
    if looks_up:
        await eventually(lambda: live.gets == [JOB], "the job's labels were read")
    await asyncio.sleep(0.3)  # room for a CancelJob that must not come
    assert live.cancels == []
    assert live.gets == ([JOB] if looks_up else [])


# Through HTTP: SSE subscribers of a real edge share the hub.


def _ids(text: str) -> list[str]:
    return [line.removeprefix("id: ") for line in text.splitlines() if line.startswith("id: ")]


async def _follow(http: httpx.AsyncClient, caught_up: asyncio.Event) -> str:
    """The whole stream; sets `caught_up` once the events logged before it came through."""
    async with http.stream("GET", "/v1/jobs/job-1/events") as response:
        assert response.status_code == 200
        reader = Reader(response)
        await reader.until(lambda t: "id: 5-0" in t)
        caught_up.set()
        return await reader.to_end()


@pytest.mark.asyncio
async def test_sse_clients_of_one_job_share_one_upstream(
    live: LivePlanner, live_client: httpx.AsyncClient
) -> None:
    live.append(state(1, "RUNNING"), *tokens(2, 5))
    flags = [asyncio.Event() for _ in range(3)]
    streams = [asyncio.ensure_future(_follow(live_client, flag)) for flag in flags]
    async with asyncio.timeout(WAIT_SECONDS):
        await asyncio.gather(*(flag.wait() for flag in flags))
    assert live.open_watches == 1
    live.append(*tokens(6, 8), state(9, "SUCCEEDED"))
    for text in await asyncio.gather(*streams):
        assert _ids(text) == cursors(1, 9)
    assert live.watch_calls == [jobs_pb2.WatchJobRequest(name=JOB)]


@pytest.mark.asyncio
async def test_client_leaving_a_cancel_on_disconnect_job_cancels_it(
    live: LivePlanner, live_client: httpx.AsyncClient
) -> None:
    live.jobs[JOB] = running_job({CANCEL_LABEL: "true"})
    live.append(state(1, "RUNNING"))
    async with live_client.stream("GET", "/v1/jobs/job-1/events") as response:
        await Reader(response).until(lambda t: "id: 1-0" in t)
        assert live.cancels == []
    await eventually(lambda: live.cancels == [JOB], "CancelJob called")


@pytest.mark.asyncio
async def test_gap_passes_through_to_subscribers_from_the_same_cursor(
    live: LivePlanner, hub: Hub
) -> None:
    gap = events_pb2.JobEvent(job=JOB, gap=events_pb2.Gap(first_available_cursor="4-0"))
    live.append(gap, state(4, "RUNNING"))
    first = hub.subscribe(CLIENT, JOB, "", METADATA)
    kinds: list[str | None] = []
    async with asyncio.timeout(WAIT_SECONDS):
        while len(kinds) < 2:
            item = await first.next(0.2)
            if isinstance(item, events_pb2.JobEvent):
                kinds.append(item.WhichOneof("payload"))
    assert kinds == ["gap", "state_changed"]
    again = hub.subscribe(CLIENT, JOB, "", METADATA)  # asked the same: told the same
    item = await again.next(WAIT_SECONDS)
    assert isinstance(item, events_pb2.JobEvent) and item.HasField("gap")
    later = hub.subscribe(CLIENT, JOB, "4-0", METADATA)  # past the gap: not told
    live.append(state(5, "SUCCEEDED"))
    assert await read(later) == ["5-0"]
    assert len(live.watch_calls) == 1
