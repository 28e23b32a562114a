"""Producers and consumers sharing one queue: the standard library's pattern, unchanged.

    python examples/producer_consumer.py                      # in memory, with threads
    python examples/producer_consumer.py --url redis://localhost:6379/0   # Redis, with processes

On Redis the producers and consumers are separate processes: start more of this script on other
machines with the same --url and --name and they join the same queue.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
from typing import Any

import distqueue


def produce(q: distqueue.Queue[Any], first: int, count: int) -> None:
    for n in range(first, first + count):
        q.put({"job": n, "payload": n * n})


def consume(q: distqueue.Queue[Any], results: distqueue.Queue[Any]) -> None:
    done = 0
    while True:
        try:
            job = q.get()
        except distqueue.ShutDown:
            break
        done += 1
        q.task_done()
        if job["job"] % 1000 == 0:
            results.put(("progress", job["job"]))
    results.put(("consumed", done))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--url", default=None, help="queue URL (default: $DISTQUEUE_URL or memory://)")
    parser.add_argument("--name", default="demo-jobs", help="queue name, shared by every process")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--maxsize", type=int, default=1000, help="bound: producers wait when full")
    args = parser.parse_args()

    jobs: distqueue.Queue[Any] = distqueue.Queue(args.maxsize, url=args.url, name=args.name)
    results: distqueue.Queue[Any] = distqueue.Queue(url=args.url, name=args.name + "-results")
    shared = jobs.url != "memory://"
    where = jobs.url if shared else "memory:// (in-process; pass --url redis://... to share it)"
    print(f"queue {args.name!r} on {where}")
    print(f"{args.producers} producers, {args.consumers} consumers, {args.items} items, maxsize {args.maxsize}")

    # Threads in memory; separate processes on a shared backend, to show it is one queue.
    spawn: Any = multiprocessing.get_context("spawn").Process if shared else threading.Thread
    started = time.perf_counter()
    per_producer = args.items // args.producers
    workers = [
        spawn(target=produce, args=(jobs, i * per_producer, per_producer)) for i in range(args.producers)
    ]
    workers += [spawn(target=consume, args=(jobs, results)) for _ in range(args.consumers)]
    for worker in workers:
        worker.start()

    jobs.join()  # every item put has been marked done, by whichever consumer took it
    elapsed = time.perf_counter() - started
    jobs.shutdown()  # wakes every consumer blocked in get(), in every process
    for worker in workers:
        worker.join()

    consumed = []
    progress = 0
    while not results.empty():
        kind, value = results.get()
        if kind == "consumed":
            consumed.append(value)
        else:
            progress += 1
    total = per_producer * args.producers
    print(f"progress reports: {progress}; consumed per consumer: {consumed}")
    print(f"{sum(consumed)} of {total} items consumed in {elapsed:.2f} s ({total / elapsed:,.0f} items/s)")
    if shared:
        jobs_cleanup = [jobs, results]
        for q in jobs_cleanup:
            q.shutdown(immediate=True)
    jobs.close()
    results.close()
    if sum(consumed) != total:
        raise SystemExit("items were lost")


if __name__ == "__main__":
    main()
