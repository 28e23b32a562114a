"""pipeline: one producer process and one consumer process on one Redis queue.

The producer puts ``ITEMS`` items one at a time; the consumer takes items one at a time until it
has them all. The time measured runs from the producer's first put to the consumer holding the
last item. distqueue (``q.put`` / blocking ``q.get``) against raw redis-py (``LPUSH`` /
``BRPOP``). Both processes are started (``spawn``) and connected before the clock starts; a
barrier releases them together.

The two timestamps come from two processes: ``time.perf_counter`` reads a system-wide monotonic
clock on Linux, macOS and Windows, so their difference is meaningful.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Literal

import redis

import distqueue

from .harness import RedisEndpoint, Trial, compare, print_comparisons, print_title, redis_server

ITEMS = 4_000
TARGET = 0.8
KEY = "bench:raw"
WAIT = 60.0  # seconds: the longest any step may take before the run is declared broken

Side = Literal["distqueue", "baseline"]


@dataclass(frozen=True)
class Job:
    """What one worker process does: which side, where, and how many items."""

    side: Side
    host: str
    port: int
    url: str
    name: str
    count: int


def _producer(job: Job, barrier: Barrier, report: Connection) -> None:
    try:
        items = [f"item-{n}" for n in range(job.count)]
        if job.side == "distqueue":
            q: distqueue.Queue[str] = distqueue.Queue(url=job.url, name=job.name)
            q.qsize()  # connect before the clock starts
            put = q.put
            barrier.wait(WAIT)
            report.send(time.perf_counter())
            for item in items:
                put(item)
            q.close()
        else:
            raw = redis.Redis(host=job.host, port=job.port)
            raw.ping()
            lpush = raw.lpush
            barrier.wait(WAIT)
            report.send(time.perf_counter())
            for item in items:
                lpush(KEY, item)
            raw.close()
    except BaseException:
        report.send(traceback.format_exc())
        raise


def _consumer(job: Job, barrier: Barrier, report: Connection) -> None:
    try:
        if job.side == "distqueue":
            q: distqueue.Queue[str] = distqueue.Queue(url=job.url, name=job.name)
            q.qsize()
            get = q.get
            barrier.wait(WAIT)
            for _ in range(job.count):
                get(timeout=WAIT)
            report.send(time.perf_counter())
            q.close()
        else:
            raw = redis.Redis(host=job.host, port=job.port)
            raw.ping()
            brpop = raw.brpop
            barrier.wait(WAIT)
            for _ in range(job.count):
                if brpop(KEY, timeout=WAIT) is None:
                    raise TimeoutError(f"BRPOP found no item within {WAIT} s")
            report.send(time.perf_counter())
            raw.close()
    except BaseException:
        report.send(traceback.format_exc())
        raise


def _receive_time(report: Connection, role: str) -> float:
    if not report.poll(WAIT):
        raise RuntimeError(f"the {role} process sent nothing within {WAIT} s")
    message = report.recv()
    if isinstance(message, str):
        raise RuntimeError(f"the {role} process failed:\n{message}")
    return float(message)


def _trial(side: Side, endpoint: RedisEndpoint, raw: redis.Redis) -> Trial:
    context = multiprocessing.get_context("spawn")

    def trial(count: int) -> float:
        raw.flushdb()
        job = Job(side, endpoint.host, endpoint.port, endpoint.url, "bench-pipeline", count)
        barrier = context.Barrier(2)
        producer_end, producer_report = context.Pipe(duplex=False)
        consumer_end, consumer_report = context.Pipe(duplex=False)
        processes = [
            context.Process(target=_producer, args=(job, barrier, producer_report)),
            context.Process(target=_consumer, args=(job, barrier, consumer_report)),
        ]
        for process in processes:
            process.start()
        try:
            started = _receive_time(producer_end, "producer")
            finished = _receive_time(consumer_end, "consumer")
        finally:
            for process in processes:
                process.join(WAIT)
                if process.is_alive():
                    process.kill()
                    process.join()
        return finished - started

    return trial


def run() -> None:
    print_title("pipeline: producer process -> Redis -> consumer process, distqueue vs redis-py")
    with redis_server() as endpoint:
        _run(endpoint)


def _run(endpoint: RedisEndpoint) -> None:
    raw = endpoint.raw_client()
    try:
        result = compare(
            "put -> get / LPUSH -> BRPOP",
            ITEMS,
            _trial("distqueue", endpoint, raw),
            _trial("baseline", endpoint, raw),
            target=TARGET,
            unit="items/s",
        )
    finally:
        raw.close()
    print_comparisons([result], "redis-py")
    print(f"({ITEMS:,} items, one at a time; from the first put to the consumer holding the last)")
