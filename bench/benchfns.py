"""What the worker processes of the ``workers`` benchmark run.

Imported as the top-level module ``benchfns`` (the ``bench`` directory on ``PYTHONPATH``), by
the producer and by every worker alike, so that a task names its function ``benchfns:square``
(distqueue) or ``benchfns.square`` (rq) and each worker imports it the same way.

``python -m benchfns arq ...`` is the producer of the ``aio_worker`` benchmark's arq side, run
by the interpreter that has arq (arq pins an older redis-py than distqueue needs).

``python -m benchfns raw HOST PORT`` runs one worker of the raw redis-py loop: ``BRPOP`` a JSON
job from ``JOBS_KEY``, call the function it names, ``LPUSH`` a JSON result to ``RESULTS_KEY``;
no lease, no acknowledgement, no result store. It runs until it is terminated.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar

JOBS_KEY = "bench:workers:jobs"
RESULTS_KEY = "bench:workers:results"


def square(n: int) -> int:
    """The job: small, so that what is measured is the machinery around it."""
    return n * n


FUNCTIONS: dict[str, Callable[..., Any]] = {"square": square}


async def asquare(n: int) -> int:
    """The job of the ``aio_worker`` benchmark on distqueue: an ``async def`` square."""
    return n * n


async def arq_square(ctx: dict[str, Any], n: int) -> int:
    """The same job for arq, whose functions take its context first."""
    return n * n


class ArqSettings:
    """The arq worker of the ``aio_worker`` benchmark (``arq.run_worker(ArqSettings)``): the
    server from ``$ARQ_REDIS_HOST`` and ``$ARQ_REDIS_PORT``, up to ``$ARQ_MAX_JOBS`` jobs at
    once, and a look at its queue every ``$ARQ_POLL_DELAY`` seconds (arq's defaults are 10 jobs
    and 0.5 s, which would cap a worker near 20 jobs/s)."""

    functions: ClassVar[list[Callable[..., Any]]] = [arq_square]
    max_jobs = int(os.environ.get("ARQ_MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("ARQ_POLL_DELAY", "0.5"))
    keep_result = 3600
    log_results = False

    @staticmethod
    def _redis_settings() -> Any:
        from arq.connections import RedisSettings

        return RedisSettings(
            host=os.environ.get("ARQ_REDIS_HOST", "127.0.0.1"),
            port=int(os.environ.get("ARQ_REDIS_PORT", "6379")),
        )


if "ARQ_REDIS_PORT" in os.environ:  # only the arq workers need (and have) arq
    ArqSettings.redis_settings = ArqSettings._redis_settings()  # type: ignore[attr-defined]


def raw_worker(host: str, port: int) -> None:
    import redis

    client = redis.Redis(host=host, port=port)
    brpop = client.brpop
    lpush = client.lpush
    loads = json.loads
    dumps = json.dumps
    while True:
        popped = brpop([JOBS_KEY], 0)
        if popped is None:
            continue
        job = loads(popped[1])
        value = FUNCTIONS[job["fn"]](*job["args"])
        lpush(RESULTS_KEY, dumps({"id": job["id"], "value": value}))


def arq_producer(host: str, port: int, first: int, count: int, wait: float, poll: float) -> None:
    """Enqueue ``arq_square(n)`` for ``count`` values of ``n`` from ``first``, then read every
    result in turn (looking every ``poll`` seconds); print ``{"seconds": ..., "values": [...]}``
    as JSON: the time from the first enqueue to the last result."""
    import asyncio
    import time

    from arq import create_pool
    from arq.connections import RedisSettings

    async def main() -> tuple[float, list[int]]:
        redis = await create_pool(RedisSettings(host=host, port=port))
        try:
            started = time.perf_counter()
            jobs = [await redis.enqueue_job("arq_square", n) for n in range(first, first + count)]
            values = []
            for job in jobs:
                if job is None:
                    raise RuntimeError("arq: a job was not enqueued")
                values.append(await job.result(timeout=wait, poll_delay=poll))
            return time.perf_counter() - started, values
        finally:
            await redis.aclose()

    seconds, values = asyncio.run(main())
    print(json.dumps({"seconds": seconds, "values": values}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "raw":
        raw_worker(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 8 and sys.argv[1] == "arq":
        host, port, first, count, wait, poll = sys.argv[2:]
        arq_producer(host, int(port), int(first), int(count), float(wait), float(poll))
    else:
        sys.exit("usage: python -m benchfns raw HOST PORT | arq HOST PORT FIRST COUNT WAIT POLL")
