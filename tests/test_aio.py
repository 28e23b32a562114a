"""The behavioural contract of distqueue.aio's queues, on every backend: asyncio.Queue's
semantics (Python 3.13), with distqueue's additions. Each test runs one event loop
(``aqueues.run``); where asyncio.Queue's behaviour applies, it is compared with it."""

from __future__ import annotations

import asyncio
import math
import queue as stdlib_queue
from typing import Any

import pytest
from aio_support import server_blocked, until, until_waiting
from conftest import AsyncQueues

import distqueue
import distqueue.aio as aio

# -- the exceptions ----------------------------------------------------------------------------


def test_the_exceptions_are_asyncios_and_the_standard_librarys() -> None:
    assert issubclass(aio.QueueEmpty, asyncio.QueueEmpty)
    assert issubclass(aio.QueueEmpty, stdlib_queue.Empty)
    assert issubclass(aio.QueueFull, asyncio.QueueFull)
    assert issubclass(aio.QueueFull, stdlib_queue.Full)
    assert issubclass(aio.QueueShutDown, distqueue.ShutDown)
    if hasattr(asyncio, "QueueShutDown"):
        assert issubclass(aio.QueueShutDown, asyncio.QueueShutDown)


def test_the_public_names() -> None:
    assert sorted(aio.__all__) == sorted(
        [
            "Cache",
            "LifoQueue",
            "Message",
            "PriorityQueue",
            "Queue",
            "QueueEmpty",
            "QueueFull",
            "QueueShutDown",
        ]
    )


# -- order -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "reference"),
    [
        (aio.Queue, asyncio.Queue),
        (aio.LifoQueue, asyncio.LifoQueue),
        (aio.PriorityQueue, asyncio.PriorityQueue),
    ],
)
def test_each_class_hands_out_items_in_asyncios_order(
    aqueues: AsyncQueues, cls: Any, reference: Any
) -> None:
    items = [(3, "c"), (1, "a"), (2, "b"), (1, "a2"), (0, "z")]

    async def body() -> None:
        q = aqueues(cls)
        expected: Any = reference()
        for item in items:
            await q.put(item)
            expected.put_nowait(item)
        got = [await q.get() for _ in items]
        want = [expected.get_nowait() for _ in items]
        assert [tuple(x) for x in got] == want

    aqueues.run(body)


def test_put_many_and_get_many_keep_the_order(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put_many(range(10))
        assert await q.get_many(4) == [0, 1, 2, 3]
        assert await q.get_many(100) == [4, 5, 6, 7, 8, 9]
        with pytest.raises(TypeError):
            await q.get_many(True)
        with pytest.raises(ValueError):
            await q.get_many(0)

    aqueues.run(body)


# -- nowait, sizes -----------------------------------------------------------------------------


def test_nowait_calls_raise_asyncios_exceptions(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, 2)
        assert q.maxsize == 2
        assert q.empty() and not q.full() and q.qsize() == 0
        q.put_nowait("a")
        q.put_nowait("b")
        assert q.full() and q.qsize() == 2 and await q.size() == 2
        with pytest.raises(asyncio.QueueFull):
            q.put_nowait("c")
        with pytest.raises(aio.QueueFull):
            await q.put("c", timeout=0)
        assert q.get_nowait() == "a"
        assert await q.get(timeout=0) == "b"
        with pytest.raises(asyncio.QueueEmpty):
            q.get_nowait()
        with pytest.raises(stdlib_queue.Empty):
            await q.get(timeout=0)
        assert q.unfinished_tasks == 2

    aqueues.run(body)


def test_maxsize_reads_as_asyncio_reads_it(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        for maxsize in (0, -1, math.nan):
            q = aqueues(aio.Queue, maxsize)
            for i in range(5):
                q.put_nowait(i)
            assert not q.full()
        with pytest.raises(TypeError):
            aio.Queue("3", url=aqueues.url)  # type: ignore[arg-type]

    aqueues.run(body)


def test_a_negative_timeout_is_a_value_error(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, 1)
        with pytest.raises(ValueError):
            await q.get(timeout=-1)
        with pytest.raises(ValueError):
            await q.put(1, timeout=math.nan)
        with pytest.raises(ValueError):
            await q.join(timeout=-1)

    aqueues.run(body)


# -- waiting -----------------------------------------------------------------------------------


def test_a_waiting_get_wakes_for_a_put_from_another_task(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        getter = asyncio.ensure_future(q.get())
        await until_waiting(q, 1)
        await q.put("hello")
        assert await getter == "hello"

    aqueues.run(body)


def test_waiting_gets_are_served_in_the_order_they_came_as_asyncio_does(
    aqueues: AsyncQueues,
) -> None:
    async def order_of(q: Any, put: Any, count: int, wait: Any) -> list[int]:
        served: list[int] = []

        async def getter(i: int) -> None:
            await q.get()
            served.append(i)

        tasks = []
        for i in range(count):
            tasks.append(asyncio.ensure_future(getter(i)))
            await asyncio.sleep(0)  # each starts (and queues up) before the next
        await wait()
        for i in range(count):
            await put(i)
        await asyncio.gather(*tasks)
        return served

    async def body() -> None:
        reference: asyncio.Queue[int] = asyncio.Queue()

        async def nothing() -> None:
            await asyncio.sleep(0)

        want = await order_of(reference, reference.put, 50, nothing)
        q = aqueues()
        got = await order_of(q, q.put, 50, lambda: until_waiting(q, 50))
        assert got == want == list(range(50))

    aqueues.run(body)


def test_a_get_with_a_timeout_raises_queue_empty_and_takes_nothing(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        with pytest.raises(aio.QueueEmpty):
            await q.get(timeout=0.05)
        await q.put(1)
        assert await q.get(timeout=5) == 1

    aqueues.run(body)


def test_asyncio_timeout_around_a_get_cancels_it_cleanly(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await asyncio.wait_for(q.get(), 0.05)
        await q.put("kept")
        # the cancelled get neither took the item nor left a waiter behind that would
        assert await q.get(timeout=5) == "kept"
        assert q.qsize() == 0

    aqueues.run(body)


def test_a_full_queue_blocks_put_until_a_get_makes_room(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, 1)
        await q.put("a")
        putter = asyncio.ensure_future(q.put("b"))
        if q._backend.shared:
            await until(lambda: server_blocked(q) >= 1, "the put blocked on the server")
        else:
            await until_waiting(q, 1)
        assert not putter.done()
        assert await q.get() == "a"
        await asyncio.wait_for(putter, 20)
        assert await q.get() == "b"

    aqueues.run(body)


def test_a_put_with_a_timeout_on_a_full_queue_raises_queue_full(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, 1)
        await q.put("a")
        with pytest.raises(aio.QueueFull):
            await q.put("b", timeout=0.05)
        assert q.qsize() == 1

    aqueues.run(body)


# -- tasks -------------------------------------------------------------------------------------


def test_join_waits_for_task_done_of_every_item(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put_many([1, 2])
        assert await q.join(timeout=0.01) is False
        joiner = asyncio.ensure_future(q.join())
        await q.get()
        await q.task_done()
        await q.get()
        q.task_done()  # not awaited: join() waits for it anyway
        assert await asyncio.wait_for(joiner, 20) is True
        assert await q.join() is True

    aqueues.run(body)


def test_task_done_once_too_often_is_a_value_error(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        with pytest.raises(ValueError):
            await q.task_done()

    aqueues.run(body)


# -- shutdown ----------------------------------------------------------------------------------


def test_shutdown_lets_consumers_drain_then_raises(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put_many(["a", "b"])
        await q.shutdown()
        assert q.is_shutdown
        with pytest.raises(aio.QueueShutDown):
            await q.put("c")
        with pytest.raises(aio.QueueShutDown):
            q.put_nowait("c")
        assert await q.get() == "a"
        assert q.get_nowait() == "b"
        with pytest.raises(aio.QueueShutDown):
            await q.get()
        with pytest.raises(aio.QueueShutDown):
            q.get_nowait()

    aqueues.run(body)


def test_shutdown_wakes_waiting_gets_and_puts(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, 1)
        other = aqueues(aio.Queue, 1, name=q.name)
        getters = [asyncio.ensure_future(q.get()) for _ in range(5)]
        await until_waiting(q, 5)
        await other.shutdown()
        results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 20)
        assert [type(r) for r in results] == [aio.QueueShutDown] * 5

        full = aqueues(aio.Queue, 1)
        await full.put("x")
        putter = asyncio.ensure_future(full.put("y"))
        if full._backend.shared:
            await until(lambda: server_blocked(full) >= 1, "the put blocked on the server")
        else:
            await until_waiting(full, 1)
        await aqueues(aio.Queue, 1, name=full.name).shutdown()
        with pytest.raises(aio.QueueShutDown):
            await asyncio.wait_for(putter, 20)
        assert await full.get() == "x"

    aqueues.run(body)


def test_immediate_shutdown_drops_the_items_and_releases_join(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put_many([1, 2, 3])
        joiner = asyncio.ensure_future(q.join())
        await q.shutdown(immediate=True)
        assert await asyncio.wait_for(joiner, 20) is True
        with pytest.raises(aio.QueueShutDown):
            await q.get()
        assert q.qsize() == 0

    aqueues.run(body)


# -- leases and dead letters -------------------------------------------------------------------


def test_a_lease_block_acknowledges_on_success_and_gives_back_on_error(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put("job")
        with pytest.raises(RuntimeError):
            async with q.lease(retry_delay=0) as item:
                assert item == "job"
                raise RuntimeError("failed")
        async with q.lease(timeout=20) as item:
            assert item == "job"
        assert await q.in_flight() == 0
        assert await q.join(timeout=5) is True

    aqueues.run(body)


def test_messages_ack_nack_and_reject(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(max_deliveries=2)
        await q.put_many(["a", "b"])
        first = await q.get_message()
        assert (first.item, first.deliveries) == ("a", 1)
        assert await first.nack() is True
        again = await q.get_message()
        assert (again.item, again.deliveries) == ("a", 2)
        assert await again.ack() is True
        assert await again.ack() is False
        second = await q.get_message()
        assert await second.extend(10) is True
        assert await second.reject("no good") is True
        letters = await q.dead_letters()
        assert [(d.item, d.error) for d in letters] == [("b", "no good")]
        assert await q.requeue_dead() == 1
        assert await q.get(timeout=5) == "b"
        await q.task_done()
        assert await q.purge_dead() == 0

    aqueues.run(body)


def test_visibility_timeout_get_is_acknowledged_by_task_done(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(visibility_timeout=30)
        await q.put("a")
        assert await q.get() == "a"
        assert await q.in_flight() == 1
        await q.task_done()
        assert await q.in_flight() == 0
        assert await q.join(timeout=5) is True

    aqueues.run(body)


def test_a_lapsed_lease_comes_back_to_a_waiting_get(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put("a")
        message = await q.get_message()
        message.abandon()  # as a consumer that died would: no more renewals
        await message.extend(0.2)
        assert await q.get(timeout=20) == "a"

    aqueues.run(body)


# -- delete, close -----------------------------------------------------------------------------


def test_delete_empties_the_queue_for_every_handle(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        other = aqueues(name=q.name)
        await q.put_many([1, 2])
        await q.shutdown()
        await other.delete()
        assert await q.size() == 0 and not q.is_shutdown
        await q.put(3)
        assert await other.get() == 3

    aqueues.run(body)


def test_async_with_closes_the_queue(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        async with aio.Queue(url=aqueues.url, name="closing-test") as q:
            await q.put(1)
            assert await q.get() == 1
            q.task_done()
        async with aio.Queue(url=aqueues.url, name="closing-test") as q:
            assert await q.join(timeout=5) is True
            await q.delete()

    aqueues.run(body)


def test_a_lease_block_cancelled_inside_gives_the_item_back(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues()
        await q.put("job")
        inside = asyncio.Event()

        async def work() -> None:
            async with q.lease(retry_delay=0):
                inside.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.ensure_future(work())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        message = await q.get_message(timeout=20)
        assert (message.item, message.deliveries) == ("job", 2)
        assert await message.ack() is True

    aqueues.run(body)


@pytest.mark.parametrize("cls", ["Queue", "LifoQueue", "PriorityQueue"])
def test_random_calls_answer_as_asyncio_queue_does(aqueues: AsyncQueues, cls: str) -> None:
    import random

    rng = random.Random(7)

    async def body() -> None:
        ours = aqueues(getattr(aio, cls), 3)
        reference: Any = getattr(asyncio, cls)(3)

        async def outcome(q: Any, call: str, arg: int) -> Any:
            try:
                if call == "put":
                    return q.put_nowait(arg)
                if call == "get":
                    return q.get_nowait()
                if call == "await_put":
                    return await asyncio.wait_for(q.put(arg), 20) if not q.full() else "full"
                if call == "await_get":
                    return await asyncio.wait_for(q.get(), 20) if not q.empty() else "empty"
                if call == "task_done":
                    result = q.task_done()
                    if isinstance(result, asyncio.Future):
                        await result
                    return None
                return (q.qsize(), q.empty(), q.full())
            except Exception as exc:  # compared by kind
                for kind in (asyncio.QueueEmpty, asyncio.QueueFull, ValueError):
                    if isinstance(exc, kind):
                        return kind.__name__
                raise

        calls = ["put", "get", "await_put", "await_get", "task_done", "sizes"]
        for step in range(150):
            call = rng.choice(calls)
            arg = rng.randrange(10)
            want = await outcome(reference, call, arg)
            got = await outcome(ours, call, arg)
            assert got == want, f"step {step}: {call}({arg}) gave {got!r}, asyncio {want!r}"

    aqueues.run(body)
