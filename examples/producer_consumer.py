"""Producers and consumers sharing one queue: the standard library's pattern, unchanged.

    python examples/producer_consumer.py                                  # in memory, threads
    python examples/producer_consumer.py --url redis://localhost:6379/0   # Redis, processes

On Redis the producers and consumers are separate processes that find the queue by its URL and
name; more processes on other machines could join it the same way.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
import uuid
from typing import Any

import distqueue


def produce(jobs: distqueue.Queue[Any], first: int, count: int) -> None:
    for n in range(first, first + count):
        jobs.put({"job": n, "numbers": [n, n + 1]})


def consume(jobs: distqueue.Queue[Any], results: distqueue.Queue[Any]) -> None:
    done = 0
    total = 0
    while True:
        try:
            job = jobs.get()
        except distqueue.ShutDown:  # the queue was shut down and is empty: no more work
            break
        total += sum(job["numbers"])
        done += 1
        jobs.task_done()
    results.put((done, total))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="queue URL (default: $DISTQUEUE_URL, else memory://)")
    parser.add_argument("--name", help="queue name shared by every process (default: a new one)")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--maxsize", type=int, default=500, help="producers wait when it is full")
    args = parser.parse_args()

    name = args.name or f"demo-{uuid.uuid4().hex[:8]}"
    jobs: distqueue.Queue[Any] = distqueue.Queue(args.maxsize, url=args.url, name=name)
    results: distqueue.Queue[Any] = distqueue.Queue(url=args.url, name=name + "-results")
    shared = jobs.url != "memory://"
    print(f"queue {name!r} on {jobs.url}" + ("" if shared else " (threads; --url to share)"))
    print(f"{args.producers} producers -> maxsize {args.maxsize} -> {args.consumers} consumers")

    # Threads in memory; separate processes on a shared backend, to show it is one queue.
    start: Any = multiprocessing.get_context("spawn").Process if shared else threading.Thread
    per_producer = args.items // args.producers
    consumers = [start(target=consume, args=(jobs, results)) for _ in range(args.consumers)]
    producers = [
        start(target=produce, args=(jobs, i * per_producer, per_producer))
        for i in range(args.producers)
    ]
    started = time.perf_counter()
    for worker in consumers + producers:
        worker.start()
    for worker in producers:
        worker.join()
    jobs.join()  # every item put has been marked done, by whichever consumer took it
    elapsed = time.perf_counter() - started
    jobs.shutdown()  # wakes every consumer blocked in get(), in every process
    for worker in consumers:
        worker.join()

    reports = [results.get(timeout=10) for _ in consumers]
    count = per_producer * args.producers
    expected = sum(2 * n + 1 for n in range(count))
    print(f"items per consumer: {[done for done, _ in reports]}")
    print(f"{count} items in {elapsed:.2f} s: {count / elapsed:,.0f} items/s")
    if shared:  # the demo's queues are its own: remove them from the server
        jobs.delete()
        results.delete()
    jobs.close()
    results.close()
    if sum(done for done, _ in reports) != count or sum(t for _, t in reports) != expected:
        raise SystemExit("FAILED: items were lost or counted twice")
    print("every item consumed exactly once")


if __name__ == "__main__":
    main()
