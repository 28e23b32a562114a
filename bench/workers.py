"""workers: tasks end to end: a producer submits N jobs, worker processes run them, results return.

The job is ``benchfns.square(n)``; what is measured is everything around it. Each side has
``WORKERS`` worker processes, started once (before any timing) and kept for the whole run; the
producer is this process. The time of one trial runs from the first submit until the producer
holds all N results.

* distqueue: ``Executor(url=..., queue=..., results=url).submit(square, n)`` N times, then
  ``concurrent.futures.wait`` on the futures; the workers are
  ``python -m distqueue worker --url URL --queue NAME --allow benchfns --concurrency 1``.
* raw loop: redis-py with nothing but the work: the producer ``LPUSH``es N JSON jobs, each
  worker ``BRPOP``s a job, computes, ``LPUSH``es a JSON result, and the producer ``BRPOP``s
  results until it has N (``python -m benchfns raw``). No lease, no acknowledgement, no result
  store: the fastest honest loop redis-py allows for this work.
* rq: ``rq.Queue.enqueue(square, n)`` N times, then ``job.latest_result(timeout=...)`` for each;
  the workers are ``rq worker --worker-class rq.worker.SimpleWorker --quiet`` (SimpleWorker
  runs jobs in the worker process; rq's default worker forks a process per job and is many
  times slower). Skipped, with a note, when rq is not installed.

Each trial first runs a few jobs untimed (connections, the Executor's collector thread, the
workers' reply queues), then the timed N. The sides take turns, ``REPETITIONS`` times, in
rotating order; the best time of each counts.

A second table is the price of a lease on one queue in one process: ``q.get()`` +
``q.task_done()`` with ``visibility_timeout=30`` against the same without it, timed as the other
benchmarks are (:func:`harness.compare`). No target.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import distqueue

from .harness import REPETITIONS as HARNESS_REPETITIONS
from .harness import RedisEndpoint, Trial, compare, print_table, print_title, redis_server

ITEMS = 2_000
"""Jobs per timed trial."""
WORKERS = 2
"""Worker processes per side."""
REPETITIONS = 3
TARGET_RAW = 0.7
TARGET_RQ = 3.0
LEASE_ITEMS = 3_000
"""get + task_done pairs per trial of the lease table."""

WARM_JOBS = 4 * WORKERS
"""Untimed jobs at the start of every trial."""
WAIT = 60.0
"""Seconds: the longest any step may take before the run is declared broken."""

DQ_QUEUE = "bench-workers"
RQ_QUEUE = "bench-workers"
BENCH_DIR = Path(__file__).resolve().parent


def _benchfns() -> ModuleType:
    """``benchfns`` as the workers import it: a top-level module from ``bench/``."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return importlib.import_module("benchfns")


def _rq() -> ModuleType | None:
    try:
        return importlib.import_module("rq")
    except ImportError:
        return None


# -- worker processes ----------------------------------------------------------------------------


@dataclass
class _Pool:
    """``WORKERS`` processes of one side, each logging to a file of its own."""

    name: str
    processes: list[tuple[subprocess.Popen[bytes], Path]]

    def check(self) -> None:
        """Raise, with the end of its log, if a worker process has exited."""
        for process, log in self.processes:
            if process.poll() is not None:
                tail = log.read_text("utf-8", "replace")[-2000:]
                raise RuntimeError(
                    f"a {self.name} worker exited with status {process.returncode}:\n{tail}"
                )


@contextmanager
def _pool(
    name: str, command: Sequence[str], logs: Path, env: dict[str, str] | None = None
) -> Iterator[_Pool]:
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), *filter(None, [env.get("PYTHONPATH")])])
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index in range(WORKERS):
            log = logs / f"{name}-{index}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
                )
            processes.append((process, log))
        yield _Pool(name, processes)
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.terminate()
        for process, _ in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the three sides -----------------------------------------------------------------------------


def _check(values: Sequence[Any], first: int, count: int, side: str) -> None:
    """The results must be the squares of ``first .. first + count - 1``, in any order."""
    expected = sorted(n * n for n in range(first, first + count))
    if sorted(values) != expected:
        raise RuntimeError(f"{side}: the results are not the squares of the jobs")


def _distqueue_trial(
    endpoint: RedisEndpoint, square: Callable[..., Any], pool: _Pool, queue: str = DQ_QUEUE
) -> Trial:
    """Jobs of ``square`` through an Executor on ``queue``, which ``pool``'s workers serve."""

    def collect(futures: list[concurrent.futures.Future[int]]) -> float:
        _, not_done = concurrent.futures.wait(futures, timeout=WAIT)
        finished = time.perf_counter()
        if not_done:
            pool.check()
            raise RuntimeError(f"distqueue: {len(not_done)} futures not done after {WAIT} s")
        return finished

    def trial(count: int) -> float:
        executor = distqueue.Executor(url=endpoint.url, queue=queue, results=endpoint.url)
        try:
            warm = [executor.submit(square, n) for n in range(WARM_JOBS)]
            collect(warm)
            _check([f.result() for f in warm], 0, WARM_JOBS, "distqueue")
            started = time.perf_counter()
            futures = [executor.submit(square, n) for n in range(count)]
            finished = collect(futures)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown()
        _check([f.result() for f in futures], 0, count, "distqueue")
        return finished - started

    return trial


def _raw_trial(endpoint: RedisEndpoint, pool: _Pool, jobs_key: str, results_key: str) -> Trial:
    client = endpoint.raw_client()

    def run_jobs(first: int, count: int) -> list[int]:
        lpush = client.lpush
        brpop = client.brpop
        dumps = json.dumps
        loads = json.loads
        for n in range(first, first + count):
            lpush(jobs_key, dumps({"id": n, "fn": "square", "args": [n]}))
        values: dict[int, int] = {}
        while len(values) < count:
            popped = brpop([results_key], WAIT)
            if popped is None:
                pool.check()
                raise RuntimeError(f"raw loop: no result within {WAIT} s")
            result = loads(popped[1])
            values[result["id"]] = result["value"]
        return list(values.values())

    def trial(count: int) -> float:
        client.delete(jobs_key, results_key)
        _check(run_jobs(-WARM_JOBS, WARM_JOBS), -WARM_JOBS, WARM_JOBS, "raw loop")
        started = time.perf_counter()
        values = run_jobs(0, count)
        finished = time.perf_counter()
        _check(values, 0, count, "raw loop")
        return finished - started

    return trial


def _rq_trial(
    endpoint: RedisEndpoint, rq: ModuleType, square: Callable[[int], int], pool: _Pool
) -> Trial:
    client = endpoint.raw_client()
    queue = rq.Queue(RQ_QUEUE, connection=client)

    def run_jobs(first: int, count: int) -> list[int]:
        enqueue = queue.enqueue
        jobs = [enqueue(square, n) for n in range(first, first + count)]
        values: list[int] = []
        for job in jobs:
            result = job.latest_result(timeout=int(WAIT))
            if result is None:
                pool.check()
                raise RuntimeError(f"rq: no result for job {job.id} within {WAIT} s")
            values.append(result.return_value)
        return values

    def trial(count: int) -> float:
        _check(run_jobs(-WARM_JOBS, WARM_JOBS), -WARM_JOBS, WARM_JOBS, "rq")
        started = time.perf_counter()
        values = run_jobs(0, count)
        finished = time.perf_counter()
        _check(values, 0, count, "rq")
        return finished - started

    return trial


# -- the lease table -----------------------------------------------------------------------------


def _lease_trial(endpoint: RedisEndpoint, visibility_timeout: float | None) -> Trial:
    runs = iter(range(1_000_000))

    def trial(count: int) -> float:
        name = f"bench-lease-{visibility_timeout}-{next(runs)}"
        q: distqueue.Queue[str] = distqueue.Queue(
            url=endpoint.url, name=name, visibility_timeout=visibility_timeout
        )
        try:
            q.put_many([f"item-{n}" for n in range(count)])
            get = q.get
            task_done = q.task_done
            started = time.perf_counter()
            for _ in range(count):
                get()
                task_done()
            elapsed = time.perf_counter() - started
            if q.unfinished_tasks != 0:
                raise RuntimeError(f"{name}: tasks left unfinished")
            q.delete()
        finally:
            q.close()
        return elapsed

    return trial


# -- running -------------------------------------------------------------------------------------


def run() -> None:
    print_title("workers: submit N jobs -> worker processes -> N results, end to end")
    with redis_server() as endpoint, tempfile.TemporaryDirectory(prefix="bench-workers-") as logs:
        _run(endpoint, Path(logs))


def _best_interleaved(trials: Sequence[Trial], count: int) -> list[float]:
    """Warm every side up, then run them in turns (rotating the order); the best of each."""
    for trial in trials:
        trial(max(1, count // 10))
    best = [math.inf] * len(trials)
    for repetition in range(REPETITIONS):
        for offset in range(len(trials)):
            index = (repetition + offset) % len(trials)
            best[index] = min(best[index], trials[index](count))
    return best


def _run(endpoint: RedisEndpoint, logs: Path) -> None:
    benchfns = _benchfns()
    square: Callable[[int], int] = benchfns.square
    rq = _rq()
    python = sys.executable
    with ExitStack() as stack:
        distqueue_pool = stack.enter_context(
            _pool(
                "distqueue",
                [
                    *(python, "-m", "distqueue", "--log-level", "WARNING", "worker"),
                    *("--url", endpoint.url, "--queue", DQ_QUEUE, "--allow", "benchfns"),
                    *("--concurrency", "1"),
                ],
                logs,
            )
        )
        raw_pool = stack.enter_context(
            _pool(
                "raw",
                [python, "-m", "benchfns", "raw", endpoint.host, str(endpoint.port)],
                logs,
            )
        )
        sides: list[tuple[str, Trial]] = [
            (
                "distqueue  Executor.submit -> distqueue worker -> Future",
                _distqueue_trial(endpoint, square, distqueue_pool),
            ),
            (
                "raw loop   LPUSH -> BRPOP, LPUSH -> BRPOP (redis-py)",
                _raw_trial(endpoint, raw_pool, benchfns.JOBS_KEY, benchfns.RESULTS_KEY),
            ),
        ]
        if rq is not None:
            rq_pool = stack.enter_context(
                _pool(
                    "rq",
                    [
                        *(python, "-m", "rq.cli", "worker", "--url", endpoint.url, "--quiet"),
                        *("--worker-class", "rq.worker.SimpleWorker", RQ_QUEUE),
                    ],
                    logs,
                )
            )
            sides.append(
                (
                    "rq         enqueue -> rq SimpleWorker -> latest_result",
                    _rq_trial(endpoint, rq, square, rq_pool),
                )
            )
        best = _best_interleaved([trial for _, trial in sides], ITEMS)

    print_table(
        ["side       one job's way", "items/s", "best time"],
        [
            [name, f"{ITEMS / seconds:,.0f} items/s", f"{seconds:.3f} s"]
            for (name, _), seconds in zip(sides, best, strict=True)
        ],
    )
    print()
    # ratio of rates = inverse ratio of times
    ratios = [("distqueue / raw loop", best[1] / best[0], TARGET_RAW)]
    if rq is not None:
        ratios.append(("distqueue / rq", best[2] / best[0], TARGET_RQ))
    print_table(
        ["ratio", "value", "target"],
        [
            [name, f"{value:.2f}x", f">= {target:.1f}x {'ok' if value >= target else 'BELOW'}"]
            for name, value, target in ratios
        ],
    )
    print(
        f"({ITEMS:,} jobs of benchfns.square per trial, {WORKERS} worker processes per side with "
        f"one thread each; best of {REPETITIONS} interleaved repetitions per side; from the first "
        "submit until the producer holds every result)"
    )
    if rq is None:
        print("(rq is not installed, so it was not compared: pip install rq)")
    _run_leases(endpoint)


def _run_leases(endpoint: RedisEndpoint) -> None:
    result = compare(
        "get + task_done",
        LEASE_ITEMS,
        _lease_trial(endpoint, 30.0),
        _lease_trial(endpoint, None),
        target=0.0,
    )
    print()
    print_table(
        ["one process, one queue", "visibility_timeout=30", "no lease", "ratio"],
        [
            [
                "q.get() + q.task_done()",
                f"{result.distqueue_rate:,.0f} ops/s",
                f"{result.baseline_rate:,.0f} ops/s",
                f"{result.ratio:.2f}x",
            ]
        ],
    )
    print(
        f"(the price of a lease; no target; {LEASE_ITEMS:,} items preloaded per trial, "
        f"medians of {HARNESS_REPETITIONS} repetitions per side, run in pairs; ratio: the median "
        "of the pairs')"
    )
