"""priority: the Redis priority queue against a raw sorted set.

``q.put((priority, "item-n"))`` against ``ZADD key {"item-n": priority}``; ``q.get()`` (with
items waiting) against ``ZPOPMIN key``. Priorities are random ints, the same sequence on both
sides. The server is emptied before every repetition; the items a get repetition takes are put
there beforehand, outside the timed part.
"""

from __future__ import annotations

import random
import time

import redis

import distqueue

from .harness import RedisEndpoint, Trial, compare, print_comparisons, print_title, redis_server

COUNT = 3_000
TARGET = 0.8
PRELOAD_CHUNK = 1_000
KEY = "bench:raw"


def _items(count: int) -> list[tuple[int, str]]:
    rng = random.Random(count)
    return [(rng.randrange(1_000), f"item-{n}") for n in range(count)]


def put_trials(
    q: distqueue.PriorityQueue[tuple[int, str]], raw: redis.Redis
) -> tuple[Trial, Trial]:
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
        zadd = raw.zadd
        items = _items(count)
        start = time.perf_counter()
        for priority, member in items:
            zadd(KEY, {member: priority})
        return time.perf_counter() - start

    return ours, baseline


def get_trials(
    q: distqueue.PriorityQueue[tuple[int, str]], raw: redis.Redis
) -> tuple[Trial, Trial]:
    def ours(count: int) -> float:
        raw.flushdb()
        items = _items(count)
        for first in range(0, count, PRELOAD_CHUNK):
            q.put_many(items[first : first + PRELOAD_CHUNK])
        get = q.get
        start = time.perf_counter()
        for _ in range(count):
            get()
        return time.perf_counter() - start

    def baseline(count: int) -> float:
        raw.flushdb()
        items = _items(count)
        raw.zadd(KEY, {member: priority for priority, member in items})
        zpopmin = raw.zpopmin
        start = time.perf_counter()
        for _ in range(count):
            zpopmin(KEY)
        return time.perf_counter() - start

    return ours, baseline


def run() -> None:
    print_title("priority: distqueue PriorityQueue on Redis vs a raw sorted set (redis-py)")
    with redis_server() as endpoint:
        _run(endpoint)


def _run(endpoint: RedisEndpoint) -> None:
    raw = endpoint.raw_client()
    q: distqueue.PriorityQueue[tuple[int, str]] = distqueue.PriorityQueue(
        url=endpoint.url, name="bench-priority"
    )
    try:
        results = [
            compare("q.put((p, x)) / ZADD", COUNT, *put_trials(q, raw), target=TARGET),
            compare("q.get() / ZPOPMIN", COUNT, *get_trials(q, raw), target=TARGET),
        ]
    finally:
        q.close()
        raw.close()
    print_comparisons(results, "redis-py")
