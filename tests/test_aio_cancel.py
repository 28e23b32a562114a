"""A cancelled get never loses an item, leases one and forgets it, or hands it out twice; a
lost reply is retried without doubling anything (real redis-server, a Cluster, and memory)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aio_support import until_waiting
from conftest import AsyncQueues
from faults import FaultyProxy
from servers import RedisServer, require_binary

import distqueue
import distqueue.aio as aio

GUARD = 60.0


async def _drain(q: Any) -> list[Any]:
    """Everything still waiting in ``q``."""
    left: list[Any] = []
    while True:
        try:
            left.extend(await q.get_many(1000, timeout=0))
        except aio.QueueEmpty:
            return left


@pytest.mark.parametrize("leased", [False, True], ids=["get", "lease"])
def test_cancelling_thousands_of_waiting_gets_while_items_arrive_loses_nothing(
    aqueues: AsyncQueues, leased: bool
) -> None:
    total = 3000
    rng = random.Random(11)

    async def body() -> None:
        q = aqueues(aio.Queue)
        producer_q = aqueues(aio.Queue, name=q.name)
        received: list[Any] = []
        acks: list[asyncio.Future[bool]] = []

        async def consume() -> None:
            if leased:
                message = await q.get_message()
                received.append(message.item)
                # acknowledged even if this task is cancelled now (a cancelled ack would
                # leave the item to come back when its lease runs out, as it should)
                acks.append(asyncio.ensure_future(message.ack()))
            else:
                received.append(await q.get())

        tasks = [asyncio.ensure_future(consume()) for _ in range(2000)]
        await until_waiting(q, 2000)

        async def produce() -> None:
            for start in range(0, total, 5):
                await producer_q.put_many(range(start, start + 5))
                await asyncio.sleep(0)

        producing = asyncio.ensure_future(produce())
        cancelled = 0
        while not producing.done():
            # cancel a few waiting (or just served) gets at every turn of the loop
            for task in rng.sample(tasks, 20):
                if not task.done():
                    task.cancel()
                    cancelled += 1
            tasks.extend(asyncio.ensure_future(consume()) for _ in range(15))
            await asyncio.sleep(0)
        await producing
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert cancelled >= 1000, f"only {cancelled} gets were cancelled"
        assert all(await asyncio.gather(*acks))
        # what the cancelled gets took is on its way back: wait for those calls
        left, handle = await _drain_settled(q, aqueues)
        counts = Counter(received + left)
        assert sorted(counts) == list(range(total)), "items lost"
        assert set(counts.values()) == {1}, "items handed out twice"
        if leased:
            assert await handle.in_flight() == 0
            assert await handle.dead_letters() == []

    aqueues.run(body)


async def _drain_settled(q: Any, aqueues: AsyncQueues) -> tuple[list[Any], Any]:
    """Close ``q`` (which waits for the give-backs of its cancelled gets), then drain its
    queue through a new handle; what was left, and that handle."""
    await q.aclose()
    handle = aqueues(name=q.name)
    return await _drain(handle), handle


def test_cancelling_a_get_while_its_take_is_on_the_way_gives_the_item_back(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue)
        await q.put_many(range(200))
        received = []
        for turn in range(200):
            task = asyncio.ensure_future(q.get())
            for _ in range(turn % 4):  # cancel at different points of the round trip
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                received.append(await task)
        left, _ = await _drain_settled(q, aqueues)
        counts = Counter(received + left)
        assert sorted(counts) == list(range(200))
        assert set(counts.values()) == {1}
        # (each goes back to the front, as it left: several given back at once may change
        # places among themselves)

    aqueues.run(body)


def test_a_lease_given_back_after_a_cancellation_is_no_delivery(aqueues: AsyncQueues) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue, max_deliveries=1)
        await q.put("only")
        for turn in range(60):
            task = asyncio.ensure_future(q.get_message())
            for _ in range(turn % 4):  # cancel at different points of the round trip
                await asyncio.sleep(0)
            task.cancel()
            try:
                message = await task
            except asyncio.CancelledError:
                continue
            # the first delivery that reached a consumer: none of the cancelled ones counted
            assert (message.item, message.deliveries) == ("only", 1)
            assert await message.ack() is True
            break
        else:
            message = await q.get_message(timeout=GUARD)
            assert (message.item, message.deliveries) == ("only", 1)
        assert await q.dead_letters() == []

    aqueues.run(body)


# -- lost replies ---------------------------------------------------------------------------------

LIMITS = "socket_timeout=1&connect_timeout=1&retry_window=4"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    own = RedisServer(require_binary("redis-server"), tmp_path_factory.mktemp("aio-faults"))
    yield own
    own.kill()


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(server.port)
    yield faulty
    faulty.close()


@pytest.mark.redis
def test_a_lost_get_reply_is_retried_and_hands_the_item_out_once(
    server: RedisServer, proxy: FaultyProxy
) -> None:
    async def body() -> None:
        name = f"aio-faults-{uuid.uuid4().hex}"
        direct: distqueue.Queue[str] = distqueue.Queue(url=server.url, name=name)
        async with aio.Queue(url=proxy.url(LIMITS), name=name) as q:
            await q.size()  # a connection in the pool, so that the fault hits the get
            direct.put_many(["lost-and-found", "next"])
            proxy.drop_reply(b"lost-and-found")
            assert await asyncio.wait_for(q.get(), GUARD) == "lost-and-found"
            assert proxy.drops == 1
            assert direct.get_many(10, timeout=0) == ["next"]
        direct.delete()
        direct.close()

    asyncio.run(body())


@pytest.mark.redis
def test_a_lost_put_reply_is_retried_without_doubling(
    server: RedisServer, proxy: FaultyProxy
) -> None:
    async def body() -> None:
        name = f"aio-faults-{uuid.uuid4().hex}"
        direct: distqueue.Queue[str] = distqueue.Queue(url=server.url, name=name)
        async with aio.Queue(url=proxy.url(LIMITS), name=name) as q:
            await q.size()
            proxy.drop_reply()
            await asyncio.wait_for(q.put("once"), GUARD)
            assert proxy.drops == 1
            assert direct.get_many(10, timeout=0) == ["once"]
            assert direct.unfinished_tasks == 1
        direct.delete()
        direct.close()

    asyncio.run(body())


@pytest.mark.redis
def test_a_lost_get_nowait_reply_gives_the_item_back(
    server: RedisServer, proxy: FaultyProxy
) -> None:
    async def body() -> None:
        name = f"aio-faults-{uuid.uuid4().hex}"
        direct: distqueue.Queue[str] = distqueue.Queue(url=server.url, name=name)
        async with aio.Queue(url=proxy.url(LIMITS), name=name) as q:
            q.qsize()  # the blocking client's connection, so that the fault hits the get
            direct.put("lost-and-found")
            proxy.drop_reply(b"lost-and-found")
            with pytest.raises(distqueue.errors.BackendConnectionError):
                q.get_nowait()
            assert proxy.drops == 1
            assert await asyncio.wait_for(q.get(), GUARD) == "lost-and-found"
        assert direct.qsize() == 0
        direct.delete()
        direct.close()

    asyncio.run(body())


@pytest.mark.redis
def test_a_server_that_is_down_gives_a_connection_error_not_a_hang() -> None:
    from servers import free_port

    async def body() -> None:
        url = f"redis://127.0.0.1:{free_port()}/0?connect_timeout=0.2&retry_window=0.5"
        async with aio.Queue(url=url) as q:
            with pytest.raises(distqueue.errors.BackendConnectionError):
                await asyncio.wait_for(q.put(1), GUARD)
            with pytest.raises(distqueue.errors.BackendConnectionError):
                await asyncio.wait_for(q.get(timeout=0), GUARD)

    asyncio.run(body())


def test_a_get_cancelled_at_any_point_of_its_round_trip_ends_cancelled(
    aqueues: AsyncQueues,
) -> None:
    async def body() -> None:
        q = aqueues(aio.Queue)
        for turn in range(60):
            task = asyncio.ensure_future(q.get())
            for _ in range(turn % 5):  # cancel at different points of the round trip
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=GUARD)
            assert done, f"a get cancelled after {turn % 5} turn(s) of the loop went on waiting"
            assert task.cancelled()

    aqueues.run(body)


@pytest.mark.redis
def test_a_reply_held_past_the_socket_timeout_is_not_run_twice(
    server: RedisServer, proxy: FaultyProxy
) -> None:
    async def body() -> None:
        name = f"aio-faults-{uuid.uuid4().hex}"
        direct: distqueue.Queue[str] = distqueue.Queue(url=server.url, name=name)
        async with aio.Queue(url=proxy.url(LIMITS), name=name) as q:
            await q.put("first")  # a kept connection, so that the delay hits the next put
            proxy.delay_reply(2.5)  # past socket_timeout: the read is ended and the put sent again
            await asyncio.wait_for(q.put("late"), GUARD)
            assert proxy.drops == 1
            proxy.heal()
            assert await q.get_many(10, timeout=0) == ["first", "late"]
            assert direct.unfinished_tasks == 2
        direct.delete()
        direct.close()

    asyncio.run(body())


@pytest.mark.redis
def test_a_server_that_stops_answering_gives_a_connection_error_not_a_hang(
    server: RedisServer, proxy: FaultyProxy
) -> None:
    async def body() -> None:
        async with aio.Queue(url=proxy.url(LIMITS), name=f"aio-{uuid.uuid4().hex}") as q:
            await q.put("kept")
            proxy.black_hole()
            with pytest.raises(distqueue.errors.BackendConnectionError) as failed:
                await asyncio.wait_for(q.put("maybe"), GUARD)
            with pytest.raises(distqueue.errors.BackendConnectionError):
                await asyncio.wait_for(q.get(timeout=0), GUARD)
            proxy.heal()
            left = await asyncio.wait_for(q.get_many(10, timeout=0), GUARD)
            if isinstance(failed.value, distqueue.errors.OutcomeUnknownError):
                assert left in (["kept"], ["kept", "maybe"])  # sent: once at most
            else:
                assert left == ["kept"]  # never sent
            await q.delete()

    asyncio.run(body())


def test_reads_stay_bounded_when_a_queue_moves_to_another_event_loop(
    server: RedisServer, proxy: FaultyProxy
) -> None:
    """A queue object used under one ``asyncio.run`` and then under another (not closed in
    between): the second loop's reads are bounded too. (It is not closed at the end either:
    redis-py cannot close a connection of an event loop that has ended.)"""
    q: aio.Queue[str] = aio.Queue(url=proxy.url(LIMITS), name=f"aio-{uuid.uuid4().hex}")

    async def first() -> None:
        await q.put("kept")
        # a read under way as the loop ends: its watch belongs to this loop
        proxy.black_hole()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(q.put("lost"), 0.05)
        proxy.heal()

    async def second() -> None:
        await asyncio.wait_for(q.put("again"), GUARD)  # connected anew, in this loop
        proxy.black_hole()
        with pytest.raises(distqueue.errors.BackendConnectionError):
            await asyncio.wait_for(q.put("maybe"), GUARD)
        proxy.heal()
        left = await asyncio.wait_for(q.get_many(10, timeout=0), GUARD)
        assert left[0] == "kept" and "again" in left
        assert set(left) <= {"kept", "lost", "again", "maybe"} and len(left) == len(set(left))
        await q.delete()

    asyncio.run(first())
    asyncio.run(second())
