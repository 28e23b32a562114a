"""Caching an expensive function with ``@cache.cached``: misses, hits, and a stampede run once.

    python examples/cached_function.py                                  # cache in memory
    python examples/cached_function.py --memcached localhost:11211      # on memcached
    python examples/cached_function.py --url redis://localhost:6379/0   # on Redis

What it teaches:

- the first call with given arguments is a *miss*: the function runs and its result is stored;
  the next call with the same arguments is a *hit*: the stored result comes back, and the
  function does not run. ``cache.stats`` counts both.
- ``invalidate(args)`` forgets one result, ``cache_clear()`` all of them.
- a *stampede*: many callers miss the same key at the same moment (a popular page after a
  restart). Without protection each would run the expensive function. ``@cache.cached`` lets
  one of them run it while the others wait for its result: it runs once.

On memcached or Redis, other processes and machines using the same cache share the results
(and the stampede protection), as the threads here do.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import distqueue
from distqueue.cache import CachedFunction

runs: list[int] = []  # the argument of each time slow_square really ran
runs_lock = threading.Lock()


def slow_square(n: int) -> int:
    """An expensive computation: a slow query, a remote call, a big report."""
    with runs_lock:
        runs.append(n)
    time.sleep(0.3)
    return n * n


def timed(label: str, call: CachedFunction[[int], int], n: int) -> None:
    started = time.perf_counter()
    value = call(n)
    elapsed = time.perf_counter() - started
    print(f"  {label:<34} -> {value:<4} in {elapsed * 1000:5.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="redis://HOST:6379/0")
    where.add_argument("--memcached", metavar="HOST:PORT", help="a memcached server")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    url = f"memcached://{args.memcached}" if args.memcached else args.url or "memory://"

    # A namespace of this run's own, so that an earlier run's results are not hits here.
    cache = distqueue.Cache(url, namespace=f"cached-{uuid.uuid4().hex[:8]}", default_ttl=60)
    # The same as writing @cache.cached(ttl=60) above "def slow_square".
    square = cache.cached(ttl=60)(slow_square)
    print(f"cache on {url}")

    print("misses and hits")
    timed("square(4), first call: a miss", square, 4)
    timed("square(4) again: a hit", square, 4)
    timed("square(5): another key, a miss", square, 5)
    stats = cache.stats
    print(f"  slow_square ran for {runs}; stats: hits {stats.hits}, misses {stats.misses}")

    print("forgetting")
    square.invalidate(4)
    timed("square(4) after invalidate(4)", square, 4)
    square.cache_clear()
    timed("square(5) after cache_clear()", square, 5)
    print(f"  slow_square ran for {runs}")

    print("a stampede")
    before = cache.stats
    ran_before = len(runs)
    results: list[int] = []
    barrier = threading.Barrier(args.threads)

    def caller() -> None:
        barrier.wait()  # every thread calls at the same moment
        value = square(7)
        with runs_lock:
            results.append(value)

    threads = [threading.Thread(target=caller) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = cache.stats
    ran = len(runs) - ran_before
    print(
        f"  {args.threads} threads called square(7) at once; slow_square ran {ran} time(s); "
        f"results: {sorted(set(results))}"
    )
    print(
        f"  stats: misses {after.misses - before.misses}, "
        f"hits {after.hits - before.hits}, "
        f"waited for another's result {after.stampede_waits - before.stampede_waits}"
    )
    stats = cache.stats
    print(
        f"total: slow_square ran {len(runs)} times for {args.threads + 5} calls; "
        f"stats: hits {stats.hits}, misses {stats.misses}, "
        f"stampede waits {stats.stampede_waits}, server errors {stats.server_errors}"
    )
    cache.close()


if __name__ == "__main__":
    main()
