"""redis_ops: one item per call on Redis, against the raw redis-py command that does the same.

``q.put(x)`` against ``LPUSH``; ``q.get()`` (blocking, with items waiting) and
``q.get_nowait()`` against ``RPOP``. The server is emptied before every repetition; the items a
get repetition takes are put there beforehand, outside the timed part.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

import distqueue

from .harness import RedisEndpoint, Trial, compare, print_comparisons, print_title, redis_server

COUNT = 3_000
TARGET = 0.8
PRELOAD_CHUNK = 1_000
KEY = "bench:raw"


def _items(count: int) -> list[str]:
    return [f"item-{n}" for n in range(count)]


def put_trials(q: distqueue.Queue[str], raw: redis.Redis) -> tuple[Trial, Trial]:
    def ours(count: int) -> float:
        raw.flushdb()
        put = q.put
        items = _items(count)
        start = time.perf_counter()
        for item in items:
            put(item)
        return time.perf_counter() - start

    def baseline(count: int) -> float:
        raw.flushdb()
        lpush = raw.lpush
        items = _items(count)
        start = time.perf_counter()
        for item in items:
            lpush(KEY, item)
        return time.perf_counter() - start

    return ours, baseline


def get_trials(
    q: distqueue.Queue[str], raw: redis.Redis, get: Callable[[], str]
) -> tuple[Trial, Trial]:
    """Trials of ``get`` (a method of ``q``) and of ``RPOP``, ``count`` items waiting."""

    def ours(count: int) -> float:
        raw.flushdb()
        items = _items(count)
        for first in range(0, count, PRELOAD_CHUNK):
            q.put_many(items[first : first + PRELOAD_CHUNK])
        start = time.perf_counter()
        for _ in range(count):
            get()
        return time.perf_counter() - start

    def baseline(count: int) -> float:
        raw.flushdb()
        items = _items(count)
        for first in range(0, count, PRELOAD_CHUNK):
            raw.lpush(KEY, *items[first : first + PRELOAD_CHUNK])
        rpop = raw.rpop
        start = time.perf_counter()
        for _ in range(count):
            rpop(KEY)
        return time.perf_counter() - start

    return ours, baseline


def run() -> None:
    print_title("redis_ops: distqueue on Redis vs raw redis-py, one item per call")
    with redis_server() as endpoint:
        _run(endpoint)


def _run(endpoint: RedisEndpoint) -> None:
    raw = endpoint.raw_client()
    q: distqueue.Queue[str] = distqueue.Queue(url=endpoint.url, name="bench-redis-ops")
    try:
        results = [
            compare("q.put(x) / LPUSH", COUNT, *put_trials(q, raw), target=TARGET),
            compare("q.get() / RPOP", COUNT, *get_trials(q, raw, q.get), target=TARGET),
            compare(
                "q.get_nowait() / RPOP", COUNT, *get_trials(q, raw, q.get_nowait), target=TARGET
            ),
        ]
    finally:
        q.close()
        raw.close()
    print_comparisons(results, "redis-py")
