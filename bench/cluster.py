"""cluster: distqueue on a 3-master Redis Cluster, against one server and raw ``RedisCluster``.

Two tables, both measured in the same run:

* **consumers over 8 queues.** 8 queues hold ``PER_QUEUE`` items each; 1, 2 and 4 consumer
  processes (each its own clients) drain them with ``q.get()``, one item per call, the queues
  dealt out among the processes. Throughput is all items over the time from the first
  process's start to the last one's end, best of ``REPETITIONS``, once on a single
  redis-server and once on a cluster of 3 masters (no replicas, so both sides do the same
  work per item). On a 2-core machine the consumers and the servers share the cores, so the
  cluster cannot be faster here; the table shows what spreading the queues costs, and where
  cores are plentiful it is the cluster that grows with more consumers.
* **single operations**: ``q.put(x)`` against ``LPUSH``, ``q.get()`` and ``q.get_nowait()``
  against ``RPOP``, both through redis-py's ``RedisCluster`` on the same cluster, timed as
  :mod:`bench.redis_ops` times them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distqueue

from .harness import (
    ServerUnavailable,
    _servers_module,
    compare,
    print_comparisons,
    print_table,
    print_title,
    redis_server,
    tests_module,
)

QUEUES = 8
PER_QUEUE = 1_500
CONSUMERS = (1, 2, 4)
REPETITIONS = 3
OPS_COUNT = 3_000
TARGET = 0.8
KEY = "bench:raw"


@contextlib.contextmanager
def redis_cluster() -> Iterator[Any]:
    """A cluster of 3 masters and no replicas on 127.0.0.1, in a temp dir."""
    servers = _servers_module()
    import pytest

    try:
        server = servers.require_binary("redis-server")
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise ServerUnavailable(str(exc.msg)) from None
    tests_cluster = tests_module("cluster")
    Cluster, ProcessLauncher = tests_cluster.Cluster, tests_cluster.ProcessLauncher

    with tempfile.TemporaryDirectory(prefix="distqueue-bench-cluster-") as directory:
        try:
            made = Cluster(ProcessLauncher(server, Path(directory)), masters=3, replicas=0)
        except (OSError, RuntimeError, AssertionError) as exc:
            raise ServerUnavailable(f"the cluster did not start: {exc}") from exc
        try:
            yield made
        finally:
            made.close()


def _names() -> list[str]:
    return [f"bench-cluster-{i}" for i in range(QUEUES)]


def _consume(url: str, names: list[str], start: Any, out: Any) -> None:
    """A consumer process: drain ``names`` one item per call; report (start, end, items)."""
    queues: list[distqueue.Queue[Any]] = [distqueue.Queue(url=url, name=name) for name in names]
    for q in queues:
        q.qsize()  # connect before the clock starts
    start.wait()
    began = time.perf_counter()
    taken = 0
    for q in queues:
        get = q.get_nowait
        while True:
            try:
                get()
            except distqueue.Empty:
                break
            taken += 1
    out.put((began, time.perf_counter(), taken))
    for q in queues:
        q.close()


def _drain_rate(url: str, processes: int) -> float:
    """Items per second for ``processes`` consumers draining the 8 preloaded queues."""
    context = multiprocessing.get_context("fork")
    names = _names()
    for name in names:
        with distqueue.Queue(url=url, name=name) as q:
            q.delete()
            for first in range(0, PER_QUEUE, 500):
                q.put_many([f"item-{n}" for n in range(first, min(first + 500, PER_QUEUE))])
    start = context.Barrier(processes)
    out = context.Queue()
    workers = [
        context.Process(target=_consume, args=(url, names[i::processes], start, out))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    taken = sum(report[2] for report in reports)
    if taken != QUEUES * PER_QUEUE:
        raise RuntimeError(f"consumers took {taken} items of {QUEUES * PER_QUEUE}")
    began = min(report[0] for report in reports)
    ended = max(report[1] for report in reports)
    return float(taken / (ended - began))


def _ops(url: str, cluster: Any) -> None:
    from redis.cluster import RedisCluster

    from .redis_ops import get_trials, put_trials

    first = cluster.nodes[0]
    raw = RedisCluster(host="127.0.0.1", port=first.port)
    q: distqueue.Queue[str] = distqueue.Queue(url=url, name="bench-cluster-ops")

    class Emptied:
        """What the redis_ops trials call ``flushdb`` on: here, deletes only their keys."""

        def __getattr__(self, name: str) -> Any:
            return getattr(raw, name)

        def flushdb(self) -> None:
            raw.delete(KEY)
            q.delete()

    emptied: Any = Emptied()
    try:
        results = [
            compare("q.put(x) / LPUSH", OPS_COUNT, *put_trials(q, emptied), target=TARGET),
            compare("q.get() / RPOP", OPS_COUNT, *get_trials(q, emptied, q.get), target=TARGET),
            compare(
                "q.get_nowait() / RPOP",
                OPS_COUNT,
                *get_trials(q, emptied, q.get_nowait),
                target=TARGET,
            ),
        ]
    finally:
        q.delete()
        q.close()
        raw.close()
    print()
    print("single operations on the cluster, against raw RedisCluster commands")
    print_comparisons(results, "RedisCluster")


def run() -> None:
    print_title("cluster: 3-master Redis Cluster against one redis-server")
    with redis_server() as single, redis_cluster() as cluster:
        rows = []
        for processes in CONSUMERS:
            best_single = best_cluster = 0.0
            for repetition in range(REPETITIONS):
                sides = [(single.url, "single"), (cluster.url, "cluster")]
                if repetition % 2:
                    sides.reverse()
                for url, side in sides:
                    rate = _drain_rate(url, processes)
                    if side == "single":
                        best_single = max(best_single, rate)
                    else:
                        best_cluster = max(best_cluster, rate)
            rows.append(
                [
                    f"{processes} consumer process{'es' if processes > 1 else ''}",
                    f"{best_single:,.0f} items/s",
                    f"{best_cluster:,.0f} items/s",
                    f"{best_cluster / best_single:.2f}x",
                ]
            )
        print(f"{QUEUES} queues of {PER_QUEUE} items, drained with q.get_nowait()")
        print_table(["consumers", "single server", "3-master cluster", "cluster/single"], rows)
        print(f"(best of {REPETITIONS} runs per cell, sides interleaved)")
        _ops(cluster.url, cluster)
