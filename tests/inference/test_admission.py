"""Bounded admission: in flight, then a bounded line, then QUEUE_FULL (pure asyncio)."""

from __future__ import annotations

import asyncio

import pytest
from google.rpc import error_details_pb2

from switchboard.inference.admission import Admission
from switchboard.inference.errors import QueueFull

from .support import detail_of


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_over_both_bounds_is_queue_full_with_retry_info() -> None:
    admission = Admission("m", max_in_flight=2, max_queued=1, retry_after_s=1.5)
    await admission.acquire()
    await admission.acquire()
    waiting = asyncio.create_task(admission.acquire())
    await _settle()

    with pytest.raises(QueueFull) as raised:
        await admission.acquire()

    assert (admission.in_flight, admission.queued) == (2, 1)
    status = raised.value.to_status()
    assert raised.value.reason == "QUEUE_FULL"
    assert raised.value.metadata == {"model": "m", "limit": "3"}
    delay = detail_of(status, error_details_pb2.RetryInfo).retry_delay
    assert (delay.seconds, delay.nanos) == (1, 500_000_000)
    waiting.cancel()


@pytest.mark.asyncio
async def test_waiters_get_released_slots_in_order() -> None:
    admission = Admission("m", max_in_flight=1, max_queued=5)
    await admission.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        await admission.acquire()
        order.append(i)

    waiters = [asyncio.create_task(wait(i)) for i in range(3)]
    await _settle()
    assert (order, admission.queued) == ([], 3)

    for expected in ([0], [0, 1], [0, 1, 2]):
        admission.release()
        await _settle()
        assert order == expected
    assert (admission.in_flight, admission.queued) == (1, 0)
    await asyncio.gather(*waiters)
    admission.release()
    assert admission.in_flight == 0


@pytest.mark.asyncio
async def test_a_cancelled_waiter_leaves_the_line_and_no_slot_leaks() -> None:
    admission = Admission("m", max_in_flight=1, max_queued=2)
    await admission.acquire()
    gone = asyncio.create_task(admission.acquire())
    stays = asyncio.create_task(admission.acquire())
    await _settle()

    gone.cancel()
    await _settle()
    assert admission.queued == 1
    admission.release()
    await asyncio.wait_for(stays, 1)
    admission.release()

    assert (admission.in_flight, admission.queued) == (0, 0)


@pytest.mark.asyncio
async def test_a_waiter_cancelled_as_its_slot_arrives_gives_it_back() -> None:
    admission = Admission("m", max_in_flight=1, max_queued=1)
    await admission.acquire()
    waiter = asyncio.create_task(admission.acquire())
    await _settle()

    admission.release()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter

    assert (admission.in_flight, admission.queued) == (0, 0)


def test_bounds_must_be_sane() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Admission("m", max_in_flight=0, max_queued=1)
