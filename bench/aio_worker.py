"""aio_worker: ``async def`` tasks end to end on the event-loop worker, against arq.

The job is an ``async def`` square (``benchfns.asquare`` for distqueue, ``benchfns.arq_square``
for arq, which takes arq's context first); what is measured is everything around it. Each side
has ``WORKERS`` worker processes running up to ``CONCURRENCY`` jobs at once, started once
(before any timing) and kept for the whole run; the producer is this process. The time of one
trial runs from the first submit until the producer holds all N results.

* distqueue: ``Executor(url=..., queue=..., results=url).submit(asquare, n)`` N times, then
  ``concurrent.futures.wait``; the workers are ``python -m distqueue worker --asyncio
  --concurrency CONCURRENCY --allow benchfns``.
* arq: ``await pool.enqueue_job("arq_square", n)`` N times, then ``await job.result()`` for each
  in turn (looking every 5 ms); the workers are ``arq.run_worker(benchfns.ArqSettings)`` with
  ``max_jobs = CONCURRENCY`` and a look at the queue every 5 ms (arq's default, 0.5 s, would cap
  each worker near ``max_jobs`` jobs every half second). arq pins a redis-py older than
  distqueue needs, so this side runs under another interpreter, ``$ARQ_PYTHON`` (``./dev
  bench`` makes ``.venv-arq`` for it): its workers and its producer (``python -m benchfns arq
  ...``, which reports its own time). Not run, with a note, without it.

The sides take turns, ``REPETITIONS`` times, in rotating order, after a warm-up; the best time
of each counts (:func:`bench.workers._best_interleaved`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from .harness import RedisEndpoint, Trial, print_table, print_title, redis_server
from .workers import (
    BENCH_DIR,
    REPETITIONS,
    _benchfns,
    _best_interleaved,
    _check,
    _distqueue_trial,
    _Pool,
    _pool,
)

ITEMS = 2_000
"""Jobs per timed trial."""
WORKERS = 2
"""Worker processes per side."""
CONCURRENCY = 100
"""Jobs one worker process runs at once."""
TARGET_ARQ = 3.0
WARM_JOBS = 4 * WORKERS
WAIT = 60.0
"""Seconds: the longest any step may take before the run is declared broken."""
ARQ_POLL_DELAY = 0.005
DQ_QUEUE = "bench-aio-workers"


def _arq_python() -> str | None:
    """The interpreter with arq (``$ARQ_PYTHON``; ``./dev bench`` makes one in ``.venv-arq``)."""
    python = os.environ.get("ARQ_PYTHON")
    if not python:
        return None
    found = subprocess.run([python, "-c", "import arq"], capture_output=True, check=False)
    return python if found.returncode == 0 else None


def _arq_trial(endpoint: RedisEndpoint, python: str, pool: _Pool) -> Trial:
    def run_jobs(first: int, count: int) -> tuple[float, list[int]]:
        done = subprocess.run(
            [
                *(python, "-m", "benchfns", "arq", endpoint.host, str(endpoint.port)),
                *(str(first), str(count), str(WAIT), str(ARQ_POLL_DELAY)),
            ],
            env={**os.environ, "PYTHONPATH": str(BENCH_DIR)},
            capture_output=True,
            text=True,
            timeout=2 * WAIT,
            check=False,
        )
        if done.returncode != 0:
            pool.check()
            raise RuntimeError(f"arq producer failed:\n{done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        return float(report["seconds"]), list(report["values"])

    def trial(count: int) -> float:
        _, values = run_jobs(-WARM_JOBS, WARM_JOBS)
        _check(values, -WARM_JOBS, WARM_JOBS, "arq")
        seconds, values = run_jobs(0, count)
        _check(values, 0, count, "arq")
        return seconds

    return trial


def run() -> None:
    print_title("aio_worker: async def jobs -> event-loop worker processes -> results, end to end")
    with (
        redis_server() as endpoint,
        tempfile.TemporaryDirectory(prefix="bench-aio-workers-") as logs,
    ):
        _run(endpoint, Path(logs))


def _run(endpoint: RedisEndpoint, logs: Path) -> None:
    benchfns = _benchfns()
    arq_python = _arq_python()
    python = sys.executable
    with ExitStack() as stack:
        distqueue_pool = stack.enter_context(
            _pool(
                "distqueue",
                [
                    *(python, "-m", "distqueue", "--log-level", "WARNING", "worker"),
                    *("--url", endpoint.url, "--queue", DQ_QUEUE, "--allow", "benchfns"),
                    *("--asyncio", "--concurrency", str(CONCURRENCY)),
                ],
                logs,
            )
        )
        sides: list[tuple[str, Trial]] = [
            (
                "distqueue  Executor.submit -> distqueue worker --asyncio -> Future",
                _distqueue_trial(endpoint, benchfns.asquare, distqueue_pool, DQ_QUEUE),
            )
        ]
        if arq_python is not None:
            arq_pool = stack.enter_context(
                _pool(
                    "arq",
                    [
                        arq_python,
                        "-c",
                        "import logging, arq, benchfns; logging.basicConfig(level=logging.WARNING);"
                        " arq.run_worker(benchfns.ArqSettings)",
                    ],
                    logs,
                    env={
                        "ARQ_REDIS_HOST": endpoint.host,
                        "ARQ_REDIS_PORT": str(endpoint.port),
                        "ARQ_MAX_JOBS": str(CONCURRENCY),
                        "ARQ_POLL_DELAY": str(ARQ_POLL_DELAY),
                    },
                )
            )
            sides.append(
                (
                    "arq        enqueue_job -> arq worker -> job.result",
                    _arq_trial(endpoint, arq_python, arq_pool),
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
    if arq_python is None:
        print(
            "(arq was not compared: set ARQ_PYTHON to a Python that has arq, or run "
            "./dev bench, which makes .venv-arq)"
        )
        return
    ratio = best[1] / best[0]  # ratio of rates = inverse ratio of times
    print()
    print_table(
        ["ratio", "value", "target"],
        [
            [
                "distqueue / arq",
                f"{ratio:.2f}x",
                f">= {TARGET_ARQ:.1f}x {'ok' if ratio >= TARGET_ARQ else 'BELOW'}",
            ]
        ],
    )
    print(
        f"({ITEMS:,} async jobs per trial, {WORKERS} worker processes per side, up to "
        f"{CONCURRENCY} jobs at once each; best of {REPETITIONS} interleaved repetitions per "
        "side; from the first submit until the producer holds every result)"
    )
