"""memory: the memory backend against the standard library's ``queue`` classes, one thread.

Each operation is a put immediately followed by a get, so the queue holds at most one item;
the last row keeps 1,000 items waiting in the priority queues, so that every put and get walks
a heap of realistic depth (where the comparison of entries costs the most).
"""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Callable
from typing import Any

import distqueue

from .harness import Comparison, Trial, compare, print_comparisons, print_title

PAIRS = 50_000
WAITING = 1_000
TARGET = 0.9


def _pairs_trial(make: Callable[[], Any], items: list[Any], waiting: list[Any]) -> Trial:
    """Put and get ``count`` items one pair at a time on a fresh queue holding ``waiting``."""

    def trial(count: int) -> float:
        q = make()
        for item in waiting:
            q.put(item)
        put, get = q.put, q.get
        batch = items[:count]
        start = time.perf_counter()
        for item in batch:
            put(item)
            get()
        return time.perf_counter() - start

    return trial


def run() -> None:
    print_title("memory: distqueue memory backend vs the standard library's queue module")
    rng = random.Random(1)
    strings = [f"item-{n}" for n in range(PAIRS)]
    numbers = [rng.randrange(1_000_000) for _ in range(PAIRS)]
    waiting = [rng.randrange(1_000_000) for _ in range(WAITING)]
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], list[Any], list[Any]]] = [
        ("Queue put+get", distqueue.Queue, queue.Queue, strings, []),
        ("LifoQueue put+get", distqueue.LifoQueue, queue.LifoQueue, strings, []),
        ("PriorityQueue put+get (ints)", distqueue.PriorityQueue, queue.PriorityQueue, numbers, []),
        (
            f"PriorityQueue put+get, {WAITING:,} waiting",
            distqueue.PriorityQueue,
            queue.PriorityQueue,
            numbers,
            waiting,
        ),
    ]
    results: list[Comparison] = []
    for operation, ours, stdlib, items, preload in cases:
        results.append(
            compare(
                operation,
                PAIRS,
                _pairs_trial(ours, items, preload),
                _pairs_trial(stdlib, items, preload),
                target=TARGET,
                unit="pairs/s",
            )
        )
    print_comparisons(results, "queue (stdlib)")
