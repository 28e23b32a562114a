"""schedule: the price of a delayed put, and how close a rate-limited queue runs to its limit.

1. ``q.put(x, delay=60)`` against ``q.put(x)`` on the same queue kind and server, and a plain
   ``q.put(x)`` on a queue that holds scheduled items (its puts then move due items first)
   against one that never had any; Redis and memory.
2. Two consumer threads drain a queue limited to ``RATE`` items per second for ``SPAN``
   seconds; the items they took within the span, per second, against the limit (1.00x: the
   limit is reached and held, above 1.00x would be a breach).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import distqueue

from .harness import Trial, compare, print_comparisons, print_table, print_title, redis_server

COUNT = 3_000
TARGET = 0.8
RATE = 500
SPAN = 3.0


def _put_trials(make: Any, delayed: bool, busy: bool) -> tuple[Trial, Trial]:
    """``q.put`` with a delay (``delayed``) or on a queue with scheduled items (``busy``),
    against a plain put on a fresh queue."""

    def ours(count: int) -> float:
        q = make()
        if busy:
            q.put("far", delay=3600)
        put = q.put
        items = [f"item-{n}" for n in range(count)]
        start = time.perf_counter()
        if delayed:
            for item in items:
                put(item, delay=60)
        else:
            for item in items:
                put(item)
        elapsed = time.perf_counter() - start
        q.delete()
        q.close()
        return elapsed

    def baseline(count: int) -> float:
        q = make()
        put = q.put
        items = [f"item-{n}" for n in range(count)]
        start = time.perf_counter()
        for item in items:
            put(item)
        elapsed = time.perf_counter() - start
        q.delete()
        q.close()
        return elapsed

    return ours, baseline


def _rate_limited(url: str) -> float:
    """Items per second two consumers took from a queue limited to RATE per second."""
    name = f"bench-rate-{time.monotonic_ns()}"
    q: distqueue.Queue[int] = distqueue.Queue(url=url, name=name)
    q.set_limits(rate=RATE, per=1.0)
    q.put_many(range(int(RATE * (SPAN + 2))))
    taken: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + SPAN + 0.5

    def consume() -> None:
        c: distqueue.Queue[int] = distqueue.Queue(url=url, name=name) if url != "memory://" else q
        while time.monotonic() < stop:
            try:
                got = c.get_many(50, timeout=0.2)
            except distqueue.Empty:
                continue
            now = time.monotonic()
            with lock:
                taken.extend([now] * len(got))

    threads = [threading.Thread(target=consume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    q.delete()
    q.close()
    first = min(taken)
    return sum(first <= t < first + SPAN for t in taken) / SPAN


def run() -> None:
    print_title("schedule: delayed put vs plain put; a rate-limited queue vs its limit")
    with redis_server() as endpoint:
        _run(endpoint.url)


def _run(redis_url: str) -> None:
    results = []
    for label, url in (("redis", redis_url), ("memory", "memory://")):

        def make(url: str = url) -> distqueue.Queue[str]:
            return distqueue.Queue(url=url, name=f"bench-sched-{time.monotonic_ns()}")

        results.append(
            compare(
                f"{label}: put(x, delay=60) / put(x)",
                COUNT,
                *_put_trials(make, delayed=True, busy=False),
                target=TARGET,
            )
        )
        results.append(
            compare(
                f"{label}: put(x), items scheduled / none",
                COUNT,
                *_put_trials(make, delayed=False, busy=True),
                target=TARGET,
            )
        )
    print_comparisons(results, "plain put(x)")
    print()
    rows = []
    for label, url in (("redis", redis_url), ("memory", "memory://")):
        measured = _rate_limited(url)
        rows.append([f"{label}: 2 consumers", f"{RATE:,} items/s", f"{measured:,.0f} items/s",
                     f"{measured / RATE:.2f}x"])  # fmt: skip
    print_table(["rate limit", "limit", "taken", "ratio"], rows)
    print(f"(items taken within {SPAN:g} s from the first, per second; above 1.00x = a breach)")
