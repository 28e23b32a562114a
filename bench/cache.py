"""cache: distqueue's Cache on memcached against raw pymemcache on the same servers, same run.

Rows, each against the raw pymemcache call that does the same:

* ``get`` / ``set`` of one key (a 100-character string) against ``Client.get`` / ``Client.set``
  on one server;
* ``get_many`` / ``set_many`` of 100 keys against ``Client.get_many`` / ``Client.set_many``;
* the same on two servers against pymemcache's ``HashClient`` (rendezvous hashing on both
  sides).

The baselines wait for the server's reply to every write (``default_noreply=False``), as the
cache does: a raw client left at pymemcache's default (``noreply``) sends writes without knowing
whether they happened, which is not the same operation. Both sides have the same timeouts and
``TCP_NODELAY``. The cache serializes the value (the safe JSON serializer) and the baseline
stores the string as it is: that cost is part of what is measured.

Last, the hit overhead of ``@cache.cached``: a call that hits, against a plain call of the
function plus one raw ``Client.get`` (what a hand-written cache lookup costs at least). It is
reported in microseconds per call, without a target.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from distqueue.cache import Cache

from .harness import (
    REPETITIONS,
    ServerUnavailable,
    Trial,
    _servers_module,
    compare,
    print_comparisons,
    print_table,
    print_title,
)

COUNT = 5_000
"""Single-key calls per repetition."""

BATCHES = 200
"""get_many/set_many calls of BATCH keys per repetition."""

BATCH = 100
TARGET = 0.8
VALUE = "v" * 100
CONNECT_TIMEOUT = 1.0
TIMEOUT = 3.0


@contextlib.contextmanager
def memcached_servers(count: int) -> Iterator[list[tuple[str, int]]]:
    """Start ``count`` memcached servers on free ports of 127.0.0.1; stop them on the way out.

    Raises :class:`ServerUnavailable` when memcached is not installed or does not start.
    """
    servers = _servers_module()
    import pytest  # importable: tests/servers.py imported it above

    try:
        binary = servers.require_binary("memcached")
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise ServerUnavailable(str(exc.msg)) from None
    started: list[Any] = []
    try:
        for _ in range(count):
            try:
                started.append(servers.MemcachedProcess(binary))
            except (OSError, RuntimeError) as exc:
                raise ServerUnavailable(f"memcached did not start: {exc}") from exc
        yield [("127.0.0.1", server.port) for server in started]
    finally:
        for server in started:
            server.kill()


def _raw_options() -> dict[str, Any]:
    return {
        "connect_timeout": CONNECT_TIMEOUT,
        "timeout": TIMEOUT,
        "no_delay": True,
        "default_noreply": False,
    }


def _cache(addresses: list[tuple[str, int]]) -> Cache:
    url = "memcached://" + ",".join(f"{host}:{port}" for host, port in addresses)
    return Cache(
        url, namespace="bench", default_ttl=None, connect_timeout=CONNECT_TIMEOUT, timeout=TIMEOUT
    )


def _keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n}" for n in range(count)]


def single_trials(cache: Cache, raw: Any) -> tuple[tuple[Trial, Trial], tuple[Trial, Trial]]:
    """(get trials, set trials): distqueue and baseline, each on ``count`` distinct keys."""
    ours_keys = _keys("key:", COUNT)
    raw_keys = _keys("bench:raw:", COUNT)
    cache.set_many(dict.fromkeys(ours_keys, VALUE))
    raw.set_many(dict.fromkeys(raw_keys, VALUE))

    def timed(call: Any, keys: list[str], *args: Any) -> Trial:
        def trial(count: int) -> float:
            batch = keys[:count]
            start = time.perf_counter()
            for key in batch:
                call(key, *args)
            return time.perf_counter() - start

        return trial

    gets = (timed(cache.get, ours_keys), timed(raw.get, raw_keys))
    sets = (timed(cache.set, ours_keys, VALUE), timed(raw.set, raw_keys, VALUE))
    return gets, sets


def batch_trials(cache: Cache, raw: Any) -> tuple[tuple[Trial, Trial], tuple[Trial, Trial]]:
    """(get_many trials, set_many trials); ``count`` is in items, BATCH per call."""
    ours_batches = [_keys(f"batch:{b}:", BATCH) for b in range(BATCHES)]
    raw_batches = [_keys(f"bench:raw:batch:{b}:", BATCH) for b in range(BATCHES)]
    for ours, theirs in zip(ours_batches, raw_batches, strict=True):
        cache.set_many(dict.fromkeys(ours, VALUE))
        raw.set_many(dict.fromkeys(theirs, VALUE))

    def get_trial(call: Any, batches: list[list[str]]) -> Trial:
        def trial(count: int) -> float:
            chosen = batches[: max(1, count // BATCH)]
            start = time.perf_counter()
            for keys in chosen:
                call(keys)
            return time.perf_counter() - start

        return trial

    def set_trial(call: Any, batches: list[list[str]]) -> Trial:
        mappings = [dict.fromkeys(keys, VALUE) for keys in batches]

        def trial(count: int) -> float:
            chosen = mappings[: max(1, count // BATCH)]
            start = time.perf_counter()
            for mapping in chosen:
                call(mapping)
            return time.perf_counter() - start

        return trial

    gets = (get_trial(cache.get_many, ours_batches), get_trial(raw.get_many, raw_batches))
    sets = (set_trial(cache.set_many, ours_batches), set_trial(raw.set_many, raw_batches))
    return gets, sets


def _compare_all(label: str, cache: Cache, raw: Any) -> list[Any]:
    (get_ours, get_raw), (set_ours, set_raw) = single_trials(cache, raw)
    (many_ours, many_raw), (setm_ours, setm_raw) = batch_trials(cache, raw)
    items = BATCHES * BATCH
    many = f"of {BATCH} ({label})"
    return [
        compare(f"get ({label})", COUNT, get_ours, get_raw, target=TARGET),
        compare(f"set ({label})", COUNT, set_ours, set_raw, target=TARGET),
        compare(f"get_many {many}", items, many_ours, many_raw, target=TARGET, unit="items/s"),
        compare(f"set_many {many}", items, setm_ours, setm_raw, target=TARGET, unit="items/s"),
    ]


def decorator_overhead(cache: Cache, raw: Client) -> list[list[str]]:
    """Microseconds per call: a cached hit, and a plain call plus one raw get."""

    def work(x: int) -> int:
        return x + 1

    cached_work = cache.cached(ttl=None, name="bench.work")(work)
    cached_work(1)  # fill
    raw.set("bench:raw:decorator", "2")
    calls = COUNT

    def ours() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            cached_work(1)
        return time.perf_counter() - start

    def baseline() -> float:
        get = raw.get
        start = time.perf_counter()
        for _ in range(calls):
            work(1)
            get("bench:raw:decorator")
        return time.perf_counter() - start

    ours()
    baseline()
    best_ours = min(ours() for _ in range(REPETITIONS))
    best_base = min(baseline() for _ in range(REPETITIONS))
    per_ours = best_ours / calls * 1e6
    per_base = best_base / calls * 1e6
    return [
        ["@cache.cached hit", f"{per_ours:.1f} us"],
        ["plain call + raw Client.get", f"{per_base:.1f} us"],
        [
            "overhead of the decorator",
            f"{per_ours - per_base:+.1f} us ({per_base / per_ours:.2f}x)",
        ],
    ]


def run() -> None:
    print_title("cache: distqueue Cache on memcached vs raw pymemcache, same servers, same run")
    with memcached_servers(2) as addresses:
        results = []
        one = _cache(addresses[:1])
        raw = Client(addresses[0], **_raw_options())
        try:
            results += _compare_all("1 server", one, raw)
            overhead = decorator_overhead(one, raw)
        finally:
            one.close()
            raw.close()
        two = _cache(addresses)
        hashing = HashClient(addresses, **_raw_options())
        try:
            results += _compare_all("2 servers", two, hashing)
        finally:
            two.close()
            hashing.close()
    print_comparisons(results, "pymemcache")
    print()
    print_table(["decorator (1 server, hit)", "per call"], overhead)
    print(f"(best of {REPETITIONS} runs of {COUNT:,} calls; pid {os.getpid()})")


if __name__ == "__main__":
    run()
