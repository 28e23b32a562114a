"""timeout: how closely ``q.get(timeout=t)`` on an empty queue keeps to ``t``.

For each ``t`` the call is made ``RUNS`` times; the overshoot is the time it took minus ``t``
(negative would mean it gave up early). There is no baseline and no target: the figures are the
point. On Redis the wait is a blocking command (``BRPOP``) with the remaining time; in memory it
is a ``threading.Condition`` wait. A raw ``BRPOP`` with the same timeout is measured as a
reference: Redis expires blocked commands on its own clock, whose granularity depends on the
server's ``hz`` setting (10 by default: up to about 100 ms late), and no client can be more
precise than that.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import redis

import distqueue

from .harness import print_table, print_title, redis_server

TIMEOUTS = (0.05, 0.2, 1.0)
RUNS = 5


def overshoots(wait: Callable[[float], None], timeout: float) -> list[float]:
    """Seconds by which ``wait(timeout)`` outlasted ``timeout``, once per run."""
    results: list[float] = []
    for _ in range(RUNS):
        start = time.perf_counter()
        wait(timeout)
        results.append(time.perf_counter() - start - timeout)
    return results


def _get_waiter(q: distqueue.Queue[str]) -> Callable[[float], None]:
    def wait(timeout: float) -> None:
        try:
            q.get(timeout=timeout)
        except distqueue.Empty:
            return
        raise RuntimeError(f"queue {q.name!r} was meant to stay empty, but get() found an item")

    return wait


def _brpop_waiter(raw: redis.Redis) -> Callable[[float], None]:
    def wait(timeout: float) -> None:
        if raw.brpop(["bench:empty"], timeout) is not None:
            raise RuntimeError(
                "list 'bench:empty' was meant to stay empty, but BRPOP found an item"
            )

    return wait


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:+.2f} ms"


def run() -> None:
    print_title("timeout: q.get(timeout=t) on an empty queue, time taken minus t")
    rows: list[list[str]] = []
    with redis_server() as endpoint:
        raw = endpoint.raw_client()
        on_redis = distqueue.Queue[str](url=endpoint.url, name="bench-timeout")
        in_memory = distqueue.Queue[str](url="memory://", name="bench-timeout")
        try:
            hz = raw.config_get("hz").get("hz", "?")
            on_redis.qsize()  # connect before the first measured call
            waiters = [
                ("redis: q.get(timeout=t)", _get_waiter(on_redis)),
                ("redis: raw BRPOP t (reference)", _brpop_waiter(raw)),
                ("memory: q.get(timeout=t)", _get_waiter(in_memory)),
            ]
            for label, wait in waiters:
                for timeout in TIMEOUTS:
                    measured = overshoots(wait, timeout)
                    rows.append(
                        [
                            label,
                            f"{timeout:g} s",
                            _ms(statistics.median(measured)),
                            _ms(max(measured)),
                            _ms(min(measured)),
                        ]
                    )
        finally:
            on_redis.close()
            in_memory.close()
            raw.close()
    print_table(["call", "t", "median overshoot", "max overshoot", "min overshoot"], rows)
    print(f"({RUNS} runs per timeout; redis-server hz = {hz})")
