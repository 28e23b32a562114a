"""Why a queue raises concurrency: the same work done serially, by threads, by processes.

    python examples/concurrency.py                                  # processes on one machine
    python examples/concurrency.py --url redis://localhost:6379/0   # processes on a Redis queue
    python examples/concurrency.py --jobs 40 --workers 8 --delay 0.02

What it teaches: each job mostly *waits* (``time.sleep`` stands in for a network call or a disk
read). Done one after another, the waits add up. Put the jobs on a queue and let several workers
take them, and the waits overlap: with ``W`` workers the work takes about ``1/W`` of the time.

- serially: one loop, one job at a time;
- threads: ``W`` threads take jobs from one ``distqueue.Queue`` (in memory);
- processes: ``W`` worker processes take jobs from one shared queue. With no URL that is the
  standard library's ``multiprocessing.JoinableQueue`` (one machine only); with ``--url`` it is a
  ``distqueue.Queue`` on Redis, which workers on other machines could join too. The worker code
  is the same function in every case: only the queue changes. Starting a process costs far
  more than starting a thread, so the workers report ready before the clock starts, and the
  start-up is shown apart.

The speed-ups depend on the machine and its load: read them, do not expect exact numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
import uuid
from typing import Any, Protocol

import distqueue


class WorkQueue(Protocol):
    """What a worker needs of a queue: ``queue.Queue``'s put, get and task_done."""

    def put(self, item: Any) -> None: ...

    def get(self) -> Any: ...

    def task_done(self) -> None: ...


def job(n: int, delay: float) -> int:
    time.sleep(delay)  # the waiting part: a reply from a server, a file from a disk
    return n * n


def worker(jobs: WorkQueue, results: WorkQueue, delay: float) -> None:
    """Take jobs until the ``None`` that says stop; put each result on ``results``."""
    results.put(("ready", os.getpid()))
    while True:
        n = jobs.get()
        if n is None:
            jobs.task_done()
            return
        results.put(("result", job(n, delay)))
        jobs.task_done()


def serially(count: int, delay: float) -> tuple[float, int]:
    started = time.perf_counter()
    total = sum(job(n, delay) for n in range(count))
    return time.perf_counter() - started, total


def with_workers(
    count: int, delay: float, workers: int, jobs: WorkQueue, results: WorkQueue, start: Any
) -> tuple[float, float, int]:
    """Run the jobs on ``workers`` started by ``start``; return (start-up, elapsed, total)."""
    started = time.perf_counter()
    running = [start(target=worker, args=(jobs, results, delay)) for _ in range(workers)]
    for each in running:
        each.start()
    for _ in running:
        results.get()  # ("ready", pid): the worker is up and about to take jobs
    ready = time.perf_counter()
    for n in range(count):
        jobs.put(n)
    for _ in running:
        jobs.put(None)  # one "stop" for each worker, after every job
    total = sum(results.get()[1] for _ in range(count))
    elapsed = time.perf_counter() - ready
    for each in running:
        each.join()
    return ready - started, elapsed, total


def report(label: str, elapsed: float, speedup: float | None, total: int) -> None:
    gain = "" if speedup is None else f"speed-up x{speedup:.1f}"
    print(f"{label + ':':<42} {elapsed:6.2f} s  {gain:<14} total {total}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="queue URL for the processes, redis://HOST:6379/0")
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each job waits")
    args = parser.parse_args()
    count, delay, workers = args.jobs, args.delay, args.workers
    expected = sum(n * n for n in range(count))
    print(f"{count} jobs, each waiting {delay} s; {workers} workers")

    base, total = serially(count, delay)
    report("serially", base, None, total)
    totals = {"serially": total}

    jobs: distqueue.Queue[Any] = distqueue.Queue(url="memory://")
    results: distqueue.Queue[Any] = distqueue.Queue(url="memory://")
    _, elapsed, total = with_workers(count, delay, workers, jobs, results, threading.Thread)
    report("threads, distqueue.Queue in memory", elapsed, base / elapsed, total)
    totals["threads"] = total

    spawn = multiprocessing.get_context("spawn")
    if args.url:
        name = f"concurrency-{uuid.uuid4().hex[:8]}"
        shared: Any = distqueue.Queue(url=args.url, name=name)
        replies: Any = distqueue.Queue(url=args.url, name=name + "-results")
        where = "distqueue.Queue on Redis"
    else:
        shared, replies = spawn.JoinableQueue(), spawn.JoinableQueue()
        where = "multiprocessing.JoinableQueue"
    startup, elapsed, total = with_workers(count, delay, workers, shared, replies, spawn.Process)
    report(f"processes, {where}", elapsed, base / elapsed, total)
    print(f"  (starting the {workers} processes took {startup:.2f} s more, not counted above)")
    totals["processes"] = total
    if args.url:  # the example's own queues: remove them from the server
        shared.delete()
        replies.delete()
        shared.close()
        replies.close()

    for label, got in totals.items():
        if got != expected:
            raise SystemExit(f"FAILED: {label} computed {got}, expected {expected}")
    print(f"every way computed the same total ({expected})")


if __name__ == "__main__":
    main()
