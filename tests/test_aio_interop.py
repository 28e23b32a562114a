"""One queue, both worlds: distqueue.Queue (blocking) and distqueue.aio.Queue on the same URL
and name are the same queue, in one process (threads and coroutines, memory and Redis) and
across processes (Redis)."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import threading
import uuid
from collections import Counter
from typing import Any

import pytest
from aio_support import until, until_waiting
from conftest import AsyncQueues
from threads import run_in_thread, wait_until_blocked

import distqueue
import distqueue.aio as aio

SPAWN = multiprocessing.get_context("spawn")
GUARD = 60.0
ITEMS = 300


def test_a_blocking_producer_feeds_an_async_consumer(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        name = f"interop-{uuid.uuid4().hex}"
        q = aqueues(aio.Queue, 10, name=name)
        sync_q = aqueues.sync(distqueue.Queue, 10, name=name)
        items = [{"n": i, "tag": ("x", i)} for i in range(ITEMS)]

        def produce() -> None:
            for item in items:
                sync_q.put(item, timeout=GUARD)
            sync_q.join(timeout=GUARD)

        thread, outcome = run_in_thread(produce)
        got = []
        for _ in items:
            got.append(await asyncio.wait_for(q.get(), GUARD))
            await q.task_done()
        assert got == items  # one consumer: FIFO order kept, tuples and all
        await asyncio.get_running_loop().run_in_executor(None, thread.join, GUARD)
        assert outcome == [None]

    aqueues.run(body)


def test_an_async_producer_feeds_blocking_consumers(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        name = f"interop-{uuid.uuid4().hex}"
        q = aqueues(aio.Queue, 5, name=name)
        consumers = [aqueues.sync(distqueue.Queue, 5, name=name) for _ in range(3)]
        got: list[int] = []
        lock = threading.Lock()

        def consume(sync_q: Any) -> None:
            while True:
                try:
                    item = sync_q.get(timeout=GUARD)
                except distqueue.ShutDown:
                    return
                with lock:
                    got.append(item)
                sync_q.task_done()

        threads = [run_in_thread(functools.partial(consume, c))[0] for c in consumers]
        for i in range(ITEMS):
            await q.put(i)  # waits, without blocking the loop, while the queue is full
        assert await asyncio.wait_for(q.join(), GUARD) is True
        await q.shutdown()
        for thread in threads:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, GUARD)
        assert sorted(got) == list(range(ITEMS))

    aqueues.run(body)


def test_a_coroutine_waiting_on_memory_does_not_block_the_loop() -> None:
    queues = AsyncQueues("memory", "memory://")

    async def body() -> None:
        name = f"interop-{uuid.uuid4().hex}"
        q = queues(aio.Queue, name=name)
        sync_q = queues.sync(distqueue.Queue, name=name)
        getter = asyncio.ensure_future(q.get())
        await until_waiting(q, 1)
        # the loop runs other work while the get waits
        ran = []
        for i in range(5):
            await asyncio.sleep(0)
            ran.append(i)
        assert ran == [0, 1, 2, 3, 4] and not getter.done()
        thread, _ = run_in_thread(lambda: sync_q.put("from a thread"))
        assert await asyncio.wait_for(getter, GUARD) == "from a thread"
        thread.join(GUARD)

    queues.run(body)


def test_a_blocked_thread_wakes_for_an_async_put_in_memory() -> None:
    queues = AsyncQueues("memory", "memory://")

    async def body() -> None:
        name = f"interop-{uuid.uuid4().hex}"
        q = queues(aio.Queue, 1, name=name)
        sync_q = queues.sync(distqueue.Queue, 1, name=name)
        thread, outcome = run_in_thread(lambda: sync_q.get(timeout=GUARD))
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_until_blocked(thread, sync_q)
        )
        await q.put("to the thread")
        await asyncio.get_running_loop().run_in_executor(None, thread.join, GUARD)
        assert outcome == ["to the thread"]

    queues.run(body)


def test_the_same_name_is_one_kind_in_memory() -> None:
    queues = AsyncQueues("memory", "memory://")

    async def body() -> None:
        name = f"interop-{uuid.uuid4().hex}"
        queues(aio.Queue, name=name)
        with pytest.raises(ValueError):
            queues(aio.LifoQueue, name=name)

    queues.run(body)


def test_a_priority_queue_is_shared_with_blocking_code(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        name = f"interop-{uuid.uuid4().hex}"
        q = aqueues(aio.PriorityQueue, name=name)
        sync_q = aqueues.sync(distqueue.PriorityQueue, name=name)
        sync_q.put((2, "b"))
        await q.put((1, "a"))
        sync_q.put((3, "c"))
        assert [tuple(await q.get()) for _ in range(2)] == [(1, "a"), (2, "b")]
        assert tuple(sync_q.get(timeout=GUARD)) == (3, "c")

    aqueues.run(body)


# -- across processes (Redis) ---------------------------------------------------------------------


def _async_producer(url: str, name: str, start: int, count: int) -> None:
    async def main() -> None:
        async with aio.Queue(10, url=url, name=name) as q:
            for i in range(start, start + count):
                await q.put(i)

    asyncio.run(main())


def _async_consumer(url: str, name: str, report: Any) -> None:
    async def main() -> None:
        got = []
        async with aio.Queue(10, url=url, name=name) as q:
            while True:
                try:
                    got.append(await asyncio.wait_for(q.get(), GUARD))
                except aio.QueueShutDown:
                    break
                q.task_done()
        report.put(got)

    asyncio.run(main())


@pytest.mark.redis
@pytest.mark.slow
def test_async_producers_in_other_processes_feed_a_blocking_consumer(redis_url: str) -> None:
    name = f"interop-{uuid.uuid4().hex}"
    q: distqueue.Queue[int] = distqueue.Queue(10, url=redis_url, name=name)
    children = [
        SPAWN.Process(target=_async_producer, args=(redis_url, name, k * ITEMS, ITEMS))
        for k in range(2)
    ]
    for child in children:
        child.start()
    got = [q.get(timeout=GUARD) for _ in range(2 * ITEMS)]
    for child in children:
        child.join(GUARD)
        assert child.exitcode == 0
    assert sorted(got) == list(range(2 * ITEMS))
    for k in range(2):  # each producer's items in its own order
        own = [i for i in got if k * ITEMS <= i < (k + 1) * ITEMS]
        assert own == sorted(own)
    q.delete()
    q.close()


@pytest.mark.redis
@pytest.mark.slow
def test_a_blocking_producer_feeds_async_consumers_in_other_processes(redis_url: str) -> None:
    name = f"interop-{uuid.uuid4().hex}"
    q: distqueue.Queue[int] = distqueue.Queue(10, url=redis_url, name=name)
    report = SPAWN.Queue()
    children = [
        SPAWN.Process(target=_async_consumer, args=(redis_url, name, report)) for _ in range(2)
    ]
    for child in children:
        child.start()
    for i in range(2 * ITEMS):
        q.put(i, timeout=GUARD)
    assert q.join(timeout=GUARD) is True
    q.shutdown()
    reports = [report.get(timeout=GUARD) for _ in children]
    for child in children:
        child.join(GUARD)
        assert child.exitcode == 0
    counts = Counter(i for got in reports for i in got)
    assert sorted(counts) == list(range(2 * ITEMS))
    assert set(counts.values()) == {1}
    q.delete()
    q.close()


@pytest.mark.redis
def test_a_thousand_waiting_gets_share_one_blocked_connection(redis_url: str) -> None:
    async def body() -> None:
        async with aio.Queue(url=redis_url) as q:
            getters = [asyncio.ensure_future(q.get()) for _ in range(1000)]
            await until_waiting(q, 1000)
            await until(lambda: q._backend.waiting_tasks == 1000, "all in line")
            from aio_support import server_blocked

            assert server_blocked(q) == 1
            await q.put_many(range(1000))
            got = await asyncio.wait_for(asyncio.gather(*getters), GUARD)
            assert got == list(range(1000))  # woken in the order they came
            await q.delete()

    asyncio.run(body())


async def _one_wait_on_the_server(q: Any, count: int, what: str) -> None:
    """Once ``count`` tasks of ``q`` stand in its shared line (puts waiting for room, joins):
    the server sees one blocked client for all of them, and not one per task."""
    from aio_support import server_blocked

    await until(lambda: q._backend.blocked_tasks == count, what)
    await until(lambda: server_blocked(q) == 1, "one wait on the server")
    await asyncio.sleep(0.05)  # (time for a wait of any single task to reach the server)
    assert server_blocked(q) == 1


@pytest.mark.redis
def test_a_thousand_puts_waiting_for_room_share_one_blocked_connection(redis_url: str) -> None:
    async def body() -> None:
        async with aio.Queue(1, url=redis_url) as q:
            await q.put(-1)
            putters = [asyncio.ensure_future(q.put(i)) for i in range(1000)]
            await _one_wait_on_the_server(q, 1000, "all waiting for room")
            got = [await asyncio.wait_for(q.get(), GUARD) for _ in range(1001)]
            assert got[0] == -1 and sorted(got[1:]) == list(range(1000))  # each put once
            await asyncio.wait_for(asyncio.gather(*putters), GUARD)
            await q.delete()

    asyncio.run(body())


async def _putters_in_line(q: aio.Queue[int], count: int) -> list[asyncio.Future[None]]:
    """Fill ``q`` (maxsize 1) with -1, then start ``count`` tasks putting 0, 1, ... one by
    one, each once the one before waits for room."""
    await q.put(-1)
    putters: list[asyncio.Future[None]] = []
    for i in range(count):
        putters.append(asyncio.ensure_future(q.put(i)))
        await until(lambda: q._backend.blocked_tasks == len(putters), "in line")
    return putters


@pytest.mark.redis
def test_puts_waiting_for_room_get_it_in_the_order_they_began_to_wait(redis_url: str) -> None:
    async def body() -> None:
        async with aio.Queue(1, url=redis_url) as q:
            putters = await _putters_in_line(q, 200)
            got = [await asyncio.wait_for(q.get(), GUARD) for _ in range(201)]
            assert got == list(range(-1, 200))
            await asyncio.wait_for(asyncio.gather(*putters), GUARD)
            await q.delete()

    asyncio.run(body())


@pytest.mark.redis
def test_waiting_puts_cancelled_put_nothing_and_the_others_go_on_in_order(redis_url: str) -> None:
    async def body() -> None:
        async with aio.Queue(1, url=redis_url) as q:
            putters = await _putters_in_line(q, 200)
            for putter in putters[::2]:
                putter.cancel()
            got = [await asyncio.wait_for(q.get(), GUARD) for _ in range(101)]
            assert got == [-1, *range(1, 200, 2)]
            assert q.qsize() == 0
            results = await asyncio.gather(*putters, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
            assert results[1::2] == [None] * 100
            await q.delete()

    asyncio.run(body())


@pytest.mark.redis
def test_a_shutdown_ends_every_put_waiting_for_room(redis_url: str) -> None:
    async def body() -> None:
        async with aio.Queue(1, url=redis_url) as q:
            await q.put("kept")
            putters = [asyncio.ensure_future(q.put(i)) for i in range(300)]
            await until(lambda: q._backend.blocked_tasks == 300, "all waiting for room")
            sync_q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=q.name)
            sync_q.shutdown()  # from another client: the token is what tells them
            results = await asyncio.wait_for(
                asyncio.gather(*putters, return_exceptions=True), GUARD
            )
            assert all(isinstance(r, aio.QueueShutDown) for r in results)
            assert await q.get() == "kept"
            sync_q.close()
            await q.delete()

    asyncio.run(body())


@pytest.mark.redis
def test_five_hundred_joins_share_one_blocked_connection_and_all_return(redis_url: str) -> None:
    async def body() -> None:
        async with aio.Queue(url=redis_url) as q:
            await q.put("work")
            joiners = [asyncio.ensure_future(q.join()) for _ in range(500)]
            await _one_wait_on_the_server(q, 500, "all joining")
            assert await q.get() == "work"
            q.task_done()
            await asyncio.wait_for(asyncio.gather(*joiners), GUARD)
            await q.delete()

    asyncio.run(body())


def test_a_memory_queue_waits_in_a_second_event_loop_after_the_first_closed() -> None:
    name = f"interop-{uuid.uuid4().hex}"
    q: aio.Queue[str] = aio.Queue(url="memory://", name=name)
    sync_q: distqueue.Queue[str] = distqueue.Queue(url="memory://", name=name)

    async def wait_for_one() -> str:
        getter = asyncio.ensure_future(q.get())
        await until_waiting(q, 1)
        thread, _ = run_in_thread(lambda: sync_q.put("from a thread"))
        item = await asyncio.wait_for(getter, GUARD)
        thread.join(GUARD)
        return item

    assert asyncio.run(wait_for_one()) == "from a thread"
    sync_q.put("while no loop runs")  # told to a closed loop: must not break the put
    assert asyncio.run(q.get()) == "while no loop runs"
    assert asyncio.run(wait_for_one()) == "from a thread"
    asyncio.run(q.aclose())


def test_async_getters_take_items_a_blocking_producer_scheduled_when_they_come_due(
    aqueues: AsyncQueues,
) -> None:
    # Nobody puts anything when a scheduled item comes due: the waiting coroutines must wake
    # by the clock (in memory, no notify happens; on Redis, the take script says when).
    async def body() -> None:
        name = f"interop-due-{uuid.uuid4().hex}"
        q = aqueues(aio.Queue, name=name)
        sync_q = aqueues.sync(distqueue.Queue, name=name)
        getters = [asyncio.ensure_future(q.get()) for _ in range(2)]
        await until_waiting(q, 2)
        sync_q.put("first", delay=0.2)
        sync_q.put_many(["second"], delay=0.3)
        got = await asyncio.wait_for(asyncio.gather(*getters), GUARD)
        assert sorted(got) == ["first", "second"]

    aqueues.run(body)
