"""aio: distqueue.aio on Redis against redis-py's asyncio client doing the same by hand.

* ``await q.put(x)`` against ``await LPUSH``; ``await q.get()`` (items waiting) against
  ``await RPOP``: one task, one item per call.
* the same two against redis-py's asyncio client sending, by hand, the very call that
  ``put``/``get`` make (FCALL of distqueue's retry-safe script, with the same keys, a fresh
  request id and the previous reply's key): what distqueue's client side costs, apart from
  what the server spends running the script that makes a put or get happen exactly once.
* 1,000 tasks waiting in ``await q.get()`` on one queue while a producer task puts the items
  in batches of 100 (``put_many``), against the same 1,000 tasks waiting on an
  ``asyncio.Queue`` that one feeder task fills from Redis by hand (``BRPOP`` in a loop, the
  producer doing ``LPUSH`` of 100): the time until every item is in a consumer's hands.

All of it runs on one event loop, made once; the server is emptied before every repetition.
The single operations run in 15 pairs of 1,000 calls: one call is one round trip, whose time
the machine's spells move most.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio

import distqueue.aio
from distqueue.backends.base import Kind
from distqueue.backends.redis.keys import QueueKeys
from distqueue.backends.redis.table import SCRIPTS
from distqueue.backends.scripts import function_name

from .harness import RedisEndpoint, Trial, compare, print_comparisons, print_title, redis_server

COUNT = 1_000
PAIRS = 15
WAITERS = 1_000
WAITED_ITEMS = 10_000
BATCH = 100
TARGET = 0.8
KEY = "bench:aio:raw"


def _items(count: int) -> list[str]:
    return [f"item-{n}" for n in range(count)]


def _trial(loop: asyncio.AbstractEventLoop, timed: Callable[[int], Awaitable[float]]) -> Trial:
    return lambda count: loop.run_until_complete(timed(count))


def put_trials(
    loop: asyncio.AbstractEventLoop, q: distqueue.aio.Queue[str], raw: Any
) -> tuple[Trial, Trial]:
    async def ours(count: int) -> float:
        await raw.flushdb()
        put = q.put
        items = _items(count)
        start = time.perf_counter()
        for item in items:
            await put(item)
        return time.perf_counter() - start

    async def baseline(count: int) -> float:
        await raw.flushdb()
        lpush = raw.lpush
        items = _items(count)
        start = time.perf_counter()
        for item in items:
            await lpush(KEY, item)
        return time.perf_counter() - start

    return _trial(loop, ours), _trial(loop, baseline)


def get_trials(
    loop: asyncio.AbstractEventLoop, q: distqueue.aio.Queue[str], raw: Any
) -> tuple[Trial, Trial]:
    async def ours(count: int) -> float:
        await raw.flushdb()
        items = _items(count)
        for first in range(0, count, 1000):
            await q.put_many(items[first : first + 1000])
        get = q.get
        start = time.perf_counter()
        for _ in range(count):
            await get()
        return time.perf_counter() - start

    async def baseline(count: int) -> float:
        await raw.flushdb()
        items = _items(count)
        for first in range(0, count, 1000):
            await raw.lpush(KEY, *items[first : first + 1000])
        rpop = raw.rpop
        start = time.perf_counter()
        for _ in range(count):
            await rpop(KEY)
        return time.perf_counter() - start

    return _trial(loop, ours), _trial(loop, baseline)


class ByHand:
    """FCALLs of queue ``name``'s retry-safe scripts, packed by redis-py as any command."""

    def __init__(self, raw: Any, name: str) -> None:
        self._raw = raw
        self._keys = QueueKeys(name, Kind.FIFO)
        self._previous = self._keys.reply
        self._count = 0

    async def call(self, script: str, *args: Any) -> Any:
        spec = SCRIPTS[script]
        self._count += 1
        reply_key = f"{self._keys.reply}byhand{self._count}"
        keys = (*self._keys.of(spec.keys), self._previous, reply_key)
        self._previous = reply_key
        return await self._raw.fcall(function_name(spec.file, True), len(keys), *keys, *args)


def same_call_trials(
    loop: asyncio.AbstractEventLoop, q: distqueue.aio.Queue[str], raw: Any, operation: str
) -> tuple[Trial, Trial]:
    """``operation`` ("put" or "get") through ``q`` against the same FCALL by hand."""
    by_hand = ByHand(raw, q.name)

    async def fill(count: int) -> list[str]:
        await raw.flushdb()
        items = _items(count)
        if operation == "get":
            for first in range(0, count, 1000):
                await q.put_many(items[first : first + 1000])
        return items

    async def ours(count: int) -> float:
        items = await fill(count)
        start = time.perf_counter()
        if operation == "put":
            for item in items:
                await q.put(item)
        else:
            for _ in range(count):
                await q.get()
        return time.perf_counter() - start

    async def baseline(count: int) -> float:
        items = await fill(count)
        call = by_hand.call
        start = time.perf_counter()
        if operation == "put":
            for item in items:
                await call("put_list", "fifo", 0, "", f'"{item}"')
        else:
            for _ in range(count):
                await call("take", "fifo", 1, 0, 0)
        return time.perf_counter() - start

    return _trial(loop, ours), _trial(loop, baseline)


async def _consumers(get: Callable[[], Awaitable[Any]], count: int) -> list[asyncio.Task[None]]:
    """``WAITERS`` tasks taking ``count`` items in all with ``get``."""
    left = [count]

    async def consume() -> None:
        while left[0] > 0:
            left[0] -= 1
            await get()

    tasks = [asyncio.ensure_future(consume()) for _ in range(WAITERS)]
    await asyncio.sleep(0)  # every task waits in its first get
    return tasks


def waiters_trials(
    loop: asyncio.AbstractEventLoop, q: distqueue.aio.Queue[str], raw: Any, waits: Any
) -> tuple[Trial, Trial]:
    async def ours(count: int) -> float:
        await raw.flushdb()
        items = _items(count)
        tasks = await _consumers(q.get, count)
        start = time.perf_counter()
        for first in range(0, count, BATCH):
            await q.put_many(items[first : first + BATCH])
        await asyncio.gather(*tasks)
        return time.perf_counter() - start

    async def baseline(count: int) -> float:
        await raw.flushdb()
        items = _items(count)
        local: asyncio.Queue[bytes] = asyncio.Queue()

        async def feed() -> None:
            for _ in range(count):
                _, item = await waits.brpop([KEY], 0)
                local.put_nowait(item)

        tasks = await _consumers(local.get, count)
        feeder = asyncio.ensure_future(feed())
        start = time.perf_counter()
        for first in range(0, count, BATCH):
            await raw.lpush(KEY, *items[first : first + BATCH])
        await asyncio.gather(*tasks, feeder)
        return time.perf_counter() - start

    return _trial(loop, ours), _trial(loop, baseline)


def run() -> None:
    print_title("aio: distqueue.aio on Redis vs redis-py's asyncio client by hand")
    with redis_server() as endpoint:
        _run(endpoint)


def _run(endpoint: RedisEndpoint) -> None:
    loop = asyncio.new_event_loop()
    raw = redis.asyncio.Redis(host=endpoint.host, port=endpoint.port)
    waits = redis.asyncio.Redis(host=endpoint.host, port=endpoint.port)
    q: distqueue.aio.Queue[str] = distqueue.aio.Queue(url=endpoint.url, name="bench-aio")
    try:
        results = [
            compare(
                "await q.put(x) / LPUSH",
                COUNT,
                *put_trials(loop, q, raw),
                target=TARGET,
                repetitions=PAIRS,
            ),
            compare(
                "await q.get() / RPOP",
                COUNT,
                *get_trials(loop, q, raw),
                target=TARGET,
                repetitions=PAIRS,
            ),
            compare(
                "await q.put(x) / the same FCALL by hand",
                COUNT,
                *same_call_trials(loop, q, raw, "put"),
                target=TARGET,
                repetitions=PAIRS,
            ),
            compare(
                "await q.get() / the same FCALL by hand",
                COUNT,
                *same_call_trials(loop, q, raw, "get"),
                target=TARGET,
                repetitions=PAIRS,
            ),
            compare(
                f"{WAITERS:,} waiting gets / BRPOP feeding asyncio.Queue",
                WAITED_ITEMS,
                *waiters_trials(loop, q, raw, waits),
                target=TARGET,
                unit="items/s",
            ),
        ]
    finally:
        loop.run_until_complete(q.aclose())
        loop.run_until_complete(raw.aclose())
        loop.run_until_complete(waits.aclose())
        loop.close()
    print_comparisons(results, "redis.asyncio")
