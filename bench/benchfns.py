"""What the worker processes of the ``workers`` benchmark run.

Imported as the top-level module ``benchfns`` (the ``bench`` directory on ``PYTHONPATH``), by
the producer and by every worker alike, so that a task names its function ``benchfns:square``
(distqueue) or ``benchfns.square`` (rq) and each worker imports it the same way.

``python -m benchfns raw HOST PORT`` runs one worker of the raw redis-py loop: ``BRPOP`` a JSON
job from ``JOBS_KEY``, call the function it names, ``LPUSH`` a JSON result to ``RESULTS_KEY``;
no lease, no acknowledgement, no result store. It runs until it is terminated.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

JOBS_KEY = "bench:workers:jobs"
RESULTS_KEY = "bench:workers:results"


def square(n: int) -> int:
    """The job: small, so that what is measured is the machinery around it."""
    return n * n


FUNCTIONS: dict[str, Callable[..., Any]] = {"square": square}


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


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "raw":
        sys.exit("usage: python -m benchfns raw HOST PORT")
    raw_worker(sys.argv[2], int(sys.argv[3]))
