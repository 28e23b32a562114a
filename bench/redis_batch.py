"""redis_batch: 100 items per call on Redis, against the raw redis-py command that does the same.

``q.put_many(items)`` against a variadic ``LPUSH key item1 ... item100``; ``q.get_many(100)``
against ``RPOP key 100``. Rates are in items per second. The server is emptied before every
repetition; the items a get repetition takes are put there beforehand, outside the timed part.
"""

from __future__ import annotations

import time

import redis

import distqueue

from .harness import RedisEndpoint, Trial, compare, print_comparisons, print_title, redis_server

BATCH = 100
BATCHES = 500
TARGET = 0.7
KEY = "bench:raw"


def _batches(count: int) -> list[list[str]]:
    """``count`` items (rounded up to whole batches) as batches of ``BATCH``."""
    return [[f"item-{first + n}" for n in range(BATCH)] for first in range(0, count, BATCH)]


def put_trials(q: distqueue.Queue[str], raw: redis.Redis) -> tuple[Trial, Trial]:
    def ours(count: int) -> float:
        raw.flushdb()
        put_many = q.put_many
        batches = _batches(count)
        start = time.perf_counter()
        for batch in batches:
            put_many(batch)
        return time.perf_counter() - start

    def baseline(count: int) -> float:
        raw.flushdb()
        lpush = raw.lpush
        batches = _batches(count)
        start = time.perf_counter()
        for batch in batches:
            lpush(KEY, *batch)
        return time.perf_counter() - start

    return ours, baseline


def get_trials(q: distqueue.Queue[str], raw: redis.Redis) -> tuple[Trial, Trial]:
    def ours(count: int) -> float:
        raw.flushdb()
        batches = _batches(count)
        for batch in batches:
            q.put_many(batch)
        get_many = q.get_many
        start = time.perf_counter()
        for _ in batches:
            get_many(BATCH)
        return time.perf_counter() - start

    def baseline(count: int) -> float:
        raw.flushdb()
        batches = _batches(count)
        for batch in batches:
            raw.lpush(KEY, *batch)
        rpop = raw.rpop
        start = time.perf_counter()
        for _ in batches:
            rpop(KEY, BATCH)
        return time.perf_counter() - start

    return ours, baseline


def run() -> None:
    print_title(f"redis_batch: distqueue on Redis vs raw redis-py, {BATCH} items per call")
    with redis_server() as endpoint:
        _run(endpoint)


def _run(endpoint: RedisEndpoint) -> None:
    raw = endpoint.raw_client()
    q: distqueue.Queue[str] = distqueue.Queue(url=endpoint.url, name="bench-redis-batch")
    count = BATCH * BATCHES
    try:
        results = [
            compare(
                f"q.put_many({BATCH}) / LPUSH x{BATCH}",
                count,
                *put_trials(q, raw),
                target=TARGET,
                unit="items/s",
            ),
            compare(
                f"q.get_many({BATCH}) / RPOP {BATCH}",
                count,
                *get_trials(q, raw),
                target=TARGET,
                unit="items/s",
            ),
        ]
    finally:
        q.close()
        raw.close()
    print_comparisons(results, "redis-py")
