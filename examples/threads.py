"""Threads, and a producer/consumer on a queue: then the same code across processes.

    python examples/threads.py                                  # threads, queue in memory
    python examples/threads.py --url redis://localhost:6379/0   # processes, queue on Redis

What it teaches:

1. Creating threads: ``threading.Thread(target=..., args=...)``, ``start()`` and ``join()``,
   and a ``Lock`` around what several threads change.
2. A producer and consumers sharing a bounded queue: ``put`` waits while the queue is full,
   ``get`` while it is empty; each consumer calls ``task_done()`` after each item, so that
   ``join()`` returns once every item put has been handled. ``shutdown()`` then ends the
   consumers' ``get()`` with ``ShutDown``.
3. With ``--url`` the very same ``consume`` function runs in separate processes: they find the
   queue by its URL and name, as processes on other machines could.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import uuid
from typing import Any

import distqueue


def part_one(count: int) -> None:
    print(f"part 1: {count} threads, each squaring its number")
    squares: list[tuple[str, int]] = []
    lock = threading.Lock()

    def square(n: int) -> None:
        value = n * n
        with lock:  # list.append is safe on its own; the lock shows the pattern for more
            squares.append((threading.current_thread().name, value))

    threads = [threading.Thread(target=square, args=(n,), name=f"thread-{n}") for n in range(count)]
    for thread in threads:
        thread.start()  # runs square(n) beside this thread
    for thread in threads:
        thread.join()  # wait until it has returned
    print(f"  threads that ran: {sorted(name for name, _ in squares)}")
    print(f"  their squares, sorted: {sorted(value for _, value in squares)}")


def produce(jobs: distqueue.Queue[int], count: int) -> None:
    for n in range(1, count + 1):
        jobs.put(n)  # waits while the queue holds maxsize items


def consume(jobs: distqueue.Queue[int], results: distqueue.Queue[Any]) -> None:
    """Take jobs until the queue is shut down; report how many and their sum of squares."""
    done = 0
    total = 0
    while True:
        try:
            n = jobs.get()
        except distqueue.ShutDown:  # shut down and empty: no more work will come
            break
        total += n * n
        done += 1
        jobs.task_done()  # this job is handled: join() counts it
    results.put((done, total))


def part_two(url: str | None, jobs_count: int, consumers: int, maxsize: int) -> None:
    name = f"threads-example-{uuid.uuid4().hex[:8]}"
    jobs: distqueue.Queue[int] = distqueue.Queue(maxsize, url=url, name=name)
    results: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name + "-results")
    shared = jobs.url != "memory://"
    kind = "processes" if shared else "threads"
    print(f"part 2: 1 producer -> Queue(maxsize={maxsize}) on {jobs.url} -> {consumers} consumers")
    print(f"  the consumers are {kind}" + ("" if shared else " (give --url for processes)"))

    # Threads share this process's memory; processes need a queue on a server (the URL).
    start: Any = multiprocessing.get_context("spawn").Process if shared else threading.Thread
    workers = [start(target=consume, args=(jobs, results)) for _ in range(consumers)]
    for worker in workers:
        worker.start()
    produce(jobs, jobs_count)
    jobs.join()  # returns once task_done() was called for every job put
    print(f"  put {jobs_count} jobs; join() returned: every job was marked done")
    jobs.shutdown()  # wakes every consumer blocked in get(), in every process
    for worker in workers:
        worker.join()

    reports = [results.get(timeout=30) for _ in workers]
    expected = sum(n * n for n in range(1, jobs_count + 1))
    handled = sum(done for done, _ in reports)
    total = sum(t for _, t in reports)
    print(f"  jobs per consumer: {sorted(done for done, _ in reports)} (in all {handled})")
    print(f"  sum of squares: {total} (expected {expected})")
    if shared:  # the example's queues are its own: remove them from the server
        jobs.delete()
        results.delete()
    jobs.close()
    results.close()
    if handled != jobs_count or total != expected:
        raise SystemExit("FAILED: jobs were lost or handled twice")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="queue URL, redis://HOST:6379/0 (default: memory)")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--maxsize", type=int, default=10)
    args = parser.parse_args()
    part_one(4)
    part_two(args.url, args.jobs, args.consumers, args.maxsize)


if __name__ == "__main__":
    main()
