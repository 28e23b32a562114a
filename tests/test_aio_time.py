"""Time and rate on the asyncio queues: delayed puts, de-duplication, limits and pauses, with
the same state on the server as the blocking queues' (memory, a real redis-server, a Cluster).

Checks are about order and counts; time appears only as a lower bound ("never early") and a
generous guard against hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aio_support import until_waiting
from conftest import AsyncQueues
from threads import run_in_thread, wait_until_blocked

import distqueue
import distqueue.aio as aio
from distqueue.backends.base import Limits

GUARD = 30.0
EPSILON = 0.002  # clocks read at slightly different moments


def _name() -> str:
    return f"aiotime-{uuid.uuid4().hex}"


# -- delayed delivery -----------------------------------------------------------------------------


def test_a_delayed_put_is_never_delivered_early(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue)
        start = time.monotonic()
        assert await q.put("late", delay=0.3) is None
        await q.put("now")
        assert await q.scheduled() == 1
        assert await q.size() == 1  # only the visible one
        assert await q.get(timeout=0) == "now"
        with pytest.raises(aio.QueueEmpty):
            await q.get(timeout=0)
        assert await asyncio.wait_for(q.get(), GUARD) == "late"  # a waiting get wakes for it
        assert time.monotonic() - start >= 0.3 - EPSILON
        assert await q.scheduled() == 0

    aqueues.run(body)


def test_a_put_at_a_time_waits_for_it_and_a_naive_time_is_refused(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue)
        start = time.monotonic()
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.3)
        await q.put("at", at=when)
        with pytest.raises(ValueError, match="time zone"):
            await q.put("naive", at=datetime.datetime.now())
        with pytest.raises(ValueError, match="not both"):
            await q.put("both", at=when, delay=1)
        with pytest.raises(ValueError):
            await q.put("negative", delay=-1)
        with pytest.raises(TypeError):
            await q.put("bool", delay=True)
        assert await q.scheduled() == 1  # the refused ones put nothing
        assert await asyncio.wait_for(q.get(), GUARD) == "at"
        assert time.monotonic() - start >= 0.3 - EPSILON

    aqueues.run(body)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [("Queue", [30, 10, 20]), ("LifoQueue", [20, 10, 30]), ("PriorityQueue", [10, 20, 30])],
)
def test_due_items_come_in_their_kinds_order(
    aqueues: AsyncQueues, cls: str, expected: list[int]
) -> None:
    async def body() -> None:
        q = aqueues(getattr(aio, cls))
        await q.put_many([10, 20], delay=0.2)
        await q.put(30, delay=0.1)
        assert await q.scheduled() == 3
        deadline = time.monotonic() + GUARD
        while await q.scheduled():  # every one due (and moved into the queue by the look)
            assert time.monotonic() < deadline, "the scheduled items never came due"
            await asyncio.sleep(0.02)
        assert await q.get_many(3, timeout=0) == expected

    aqueues.run(body)


def test_a_delayed_put_does_not_wait_for_room(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, 1)
        await q.put("in")
        await q.put("later", delay=0.2, timeout=0)  # a full queue: the delayed one goes in
        assert await q.get(timeout=GUARD) == "in"
        assert await asyncio.wait_for(q.get(), GUARD) == "later"

    aqueues.run(body)


def test_a_blocking_put_with_a_delay_reaches_a_waiting_async_get(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        name = _name()
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        getter = asyncio.ensure_future(q.get())
        await until_waiting(q, 1)
        start = time.monotonic()
        sync_q.put("from a thread's queue", delay=0.3)
        assert await q.scheduled() == 1  # the async handle sees the blocking handle's put
        assert await asyncio.wait_for(getter, GUARD) == "from a thread's queue"
        assert time.monotonic() - start >= 0.3 - EPSILON

    aqueues.run(body)


# -- de-duplication -------------------------------------------------------------------------------


def test_of_concurrent_async_producers_with_one_key_exactly_one_puts(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        name = _name()
        handles = [aqueues(aio.Queue, name=name) for _ in range(4)]

        async def produce(i: int) -> bool:
            put: bool = await handles[i % 4].put(i, dedup_key="job-7", dedup_for=30)
            return put

        outcomes = await asyncio.gather(*(produce(i) for i in range(40)))
        assert Counter(outcomes) == Counter({True: 1, False: 39})
        winner = outcomes.index(True)
        assert await handles[0].get_many(100, timeout=0) == [winner]
        # taken, but the window still holds the key
        assert await handles[1].put("again", dedup_key="job-7", dedup_for=30) is False
        assert await handles[1].put("other", dedup_key="job-8", dedup_for=30) is True
        assert await handles[2].put_many([1, 2], dedup_key="job-7", dedup_for=30) is False
        assert await handles[2].put_many([1, 2], dedup_key="job-9", dedup_for=30) is True
        assert await handles[3].size() == 3
        with pytest.raises(ValueError, match="dedup_for"):
            await handles[0].put("x", dedup_key="job-10")
        with pytest.raises(TypeError):
            await handles[0].put("x", dedup_key="", dedup_for=1)

    aqueues.run(body)


def test_an_async_dedup_put_refuses_a_blocking_one_with_the_same_key(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        name = _name()
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        assert await q.put("async", dedup_key="k", dedup_for=30) is True
        assert sync_q.put("blocking", dedup_key="k", dedup_for=30) is False
        assert sync_q.put("blocking", dedup_key="k2", dedup_for=30) is True
        assert await q.put("async", dedup_key="k2", dedup_for=30) is False
        assert await q.get_many(10, timeout=0) == ["async", "blocking"]

    aqueues.run(body)


def test_a_scheduled_item_holds_its_key_until_it_is_due(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue)
        assert await q.put("first", delay=0.3, dedup_key="k", dedup_for=0.05) is True
        assert await q.put("second", dedup_key="k", dedup_for=0.05) is False
        assert await asyncio.wait_for(q.get(), GUARD) == "first"
        with pytest.raises(aio.QueueEmpty):
            await q.get(timeout=0)  # the refused one was never put

    aqueues.run(body)


# -- limits and pauses ----------------------------------------------------------------------------


def test_limits_set_by_an_async_handle_are_the_blocking_handles(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        name = _name()
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        assert await q.limits() == Limits()
        await q.set_limits(rate=5, per=2.5, concurrency=3)
        assert sync_q.limits() == Limits(rate=5, per=2.5, concurrency=3)
        sync_q.set_limits(rate=2)
        assert await q.limits() == Limits(rate=2, per=1.0)
        await q.set_limits()
        assert sync_q.limits() == Limits()
        with pytest.raises(ValueError):
            await q.set_limits(rate=0)
        with pytest.raises(TypeError):
            await q.set_limits(concurrency=True)
        with pytest.raises(ValueError):
            await q.pause(-1)

    aqueues.run(body)


def test_a_rate_limit_holds_across_an_async_and_a_blocking_consumer(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        name = _name()
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        await q.set_limits(rate=3, per=60)
        await q.put_many(range(10))
        assert await q.get_many(2, timeout=0) == [0, 1]
        assert sync_q.get_many(10, block=False) == [2]
        with pytest.raises(distqueue.Empty):
            sync_q.get(block=False)
        with pytest.raises(aio.QueueEmpty):
            await q.get(timeout=0.1)
        assert await q.size() == 7  # held back, not gone
        sync_q.set_limits()  # lifted: the waiting async get goes on
        assert await q.get(timeout=GUARD) == 3

    aqueues.run(body)


def test_a_waiting_async_get_goes_on_when_the_rate_period_lets_it(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue)
        await q.set_limits(rate=2, per=0.4)
        await q.put_many(range(3))
        start = time.monotonic()
        assert await q.get_many(3) == [0, 1]
        assert await asyncio.wait_for(q.get(), GUARD) == 2
        assert time.monotonic() - start >= 0.4 - EPSILON

    aqueues.run(body)


def test_a_concurrency_limit_holds_an_async_lease_until_a_blocking_ack(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        name = _name()
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        await q.set_limits(concurrency=1)
        await q.put_many(["a", "b"])
        held = sync_q.get_message(block=False)
        waiter = asyncio.ensure_future(q.get_message())
        await until_waiting(q, 1)
        assert not waiter.done()
        held.ack()
        message = await asyncio.wait_for(waiter, GUARD)
        assert message.item == "b"
        assert await message.ack() is True

    aqueues.run(body)


def test_an_async_pause_holds_a_blocking_consumer_and_an_async_one(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        name = _name()
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        await q.put_many(["a", "b"])
        start = time.monotonic()
        await q.pause(0.4)
        await q.pause(0.01)  # a shorter pause does not cut the longer one
        with pytest.raises(distqueue.Empty):
            sync_q.get(block=False)
        with pytest.raises(aio.QueueEmpty):
            await q.get(timeout=0)
        thread, outcome = run_in_thread(lambda: sync_q.get(timeout=GUARD))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, wait_until_blocked, thread, sync_q)
        got = await asyncio.wait_for(q.get(), GUARD)
        await loop.run_in_executor(None, thread.join, GUARD)
        assert time.monotonic() - start >= 0.4 - EPSILON
        assert sorted([got, *outcome]) == ["a", "b"]

    aqueues.run(body)


def test_cancelled_gets_under_a_rate_limit_use_up_none_of_it(
    aqueues: AsyncQueues,
) -> None:
    rate = 40

    async def body() -> None:
        q = aqueues(aio.Queue)
        await q.set_limits(rate=rate, per=120)
        await q.put_many(range(200))
        received: list[Any] = []
        for turn in range(60):
            task = asyncio.ensure_future(q.get())
            for _ in range(turn % 5):  # cancel at different points of the round trip
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                received.append(await task)
        await q.aclose()  # waits for what the cancelled gets took to go back
        handle = aqueues(aio.Queue, name=q.name)
        # every grant not used by a delivery is still there, and no more
        rest = await _drain(handle)
        assert len(received) + len(rest) == rate
        with pytest.raises(aio.QueueEmpty):
            await handle.get(timeout=0)
        counts = Counter(received + rest)
        assert set(counts.values()) == {1}
        assert await handle.size() == 200 - rate

    aqueues.run(body)


async def _drain(q: Any) -> list[Any]:
    left: list[Any] = []
    while True:
        try:
            left.extend(await q.get_many(1000, timeout=0))
        except aio.QueueEmpty:
            return left


def test_gets_held_back_by_a_limit_and_cancelled_as_it_lets_go_use_up_none_of_it(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        name = _name()
        handle = aqueues(aio.Queue, name=name)
        await handle.put_many(range(1000))
        seen: list[Any] = []
        for turn in range(12):
            q = aqueues(aio.Queue, name=name)
            await handle.set_limits(rate=1, per=120)
            seen.append(await handle.get())  # the one grant: the waiters below are held back
            waiters = [asyncio.ensure_future(q.get()) for _ in range(3)]
            await until_waiting(q, 3)
            await handle.set_limits(rate=3, per=120)  # three fresh grants: the waiters wake
            for _ in range(turn % 6):  # cancel them at different points of their take
                await asyncio.sleep(0)
            for waiter in waiters:
                waiter.cancel()
            outcomes = await asyncio.gather(*waiters, return_exceptions=True)
            delivered = [x for x in outcomes if not isinstance(x, BaseException)]
            await q.aclose()  # what their takes took is back now
            rest = await _drain(handle)
            assert len(delivered) + len(rest) == 3, (turn, delivered, rest)
            seen.extend(delivered + rest)
        assert len(seen) == len(set(seen)), "an item was handed out twice"
        assert await handle.size() == 1000 - len(seen)

    aqueues.run(body)
