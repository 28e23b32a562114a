"""The cache shared by real processes, on a real Redis and two real memcached servers.

Children are started with the "spawn" start method and run the functions at the top of this
module. They report through a multiprocessing queue. Durations are never asserted; every wait
has a generous limit (``GUARD``) so that a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from distqueue.cache import Cache

pytestmark = pytest.mark.slow

SPAWN = multiprocessing.get_context("spawn")
GUARD = 60.0


# -- what the child processes run ----------------------------------------------------------------


def stampede_child(
    url: str, namespace: str, threads: int, ready: Any, go: Any, reports: Any
) -> None:
    """Call the shared cached function from ``threads`` threads at once; report the values."""
    cache = Cache(url, namespace=namespace)

    @cache.cached(ttl=600, name="mp.stampede", lock_ttl=GUARD)
    def expensive(x: int) -> dict[str, Any]:
        cache.incr("runs", ttl=600)
        time.sleep(0.5)
        return {"x": x, "by": os.getpid()}

    barrier = threading.Barrier(threads)
    values: list[Any] = []

    def call() -> None:
        barrier.wait(GUARD)
        values.append(expensive(7))

    workers = [threading.Thread(target=call) for _ in range(threads)]
    ready.put(os.getpid())
    go.wait(GUARD)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(GUARD)
    reports.put(values)
    cache.close()


def dying_holder(url: str, namespace: str, computing: Any) -> None:
    """Take the lock of the shared cached function and hang while "computing" (to be killed)."""
    cache = Cache(url, namespace=namespace)

    @cache.cached(ttl=600, name="mp.victim", lock_ttl=2)
    def victim() -> str:
        computing.set()
        time.sleep(3600)
        return "never"

    victim()


def fill_with_set_argument(url: str, namespace: str, done: Any) -> None:
    """Cache a call whose argument is a set (iterated in this process's hash order)."""
    cache = Cache(url, namespace=namespace)

    @cache.cached(ttl=600, name="mp.sets")
    def describe(tags: frozenset[str], options: dict[str, int]) -> str:
        return "computed in the child"

    describe(frozenset(f"tag-{n}" for n in range(50)), {f"o{n}": n for n in range(50)})
    done.put(True)
    cache.close()


# -- the test process's side ---------------------------------------------------------------------


def cas_child(url: str, namespace: str, rounds: int, go: Any, reports: Any) -> None:
    """Each round: read the shared list with gets, and try once to store it with this
    process's pid added; report the rounds won."""
    cache = Cache(url, namespace=namespace)
    go.wait(GUARD)
    won = 0
    for _ in range(rounds):
        value, token = cache.gets("shared")
        if token is not None and cache.cas("shared", [*value, os.getpid()], token):
            won += 1
    reports.put((os.getpid(), won))
    cache.close()


@pytest.fixture(params=["redis", "memcached"])
def shared_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("memcached_url"))


@pytest.fixture
def children() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for child in started:
        if child.is_alive():
            child.kill()
        child.join(10)


def test_many_threads_in_several_processes_run_the_function_once(
    shared_url: str, children: list[Any]
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    processes, threads = 3, 8
    ready, reports, go = SPAWN.Queue(), SPAWN.Queue(), SPAWN.Event()
    for _ in range(processes):
        child = SPAWN.Process(
            target=stampede_child, args=(shared_url, namespace, threads, ready, go, reports)
        )
        child.start()
        children.append(child)
    for _ in range(processes):
        ready.get(timeout=GUARD)
    go.set()
    values = [value for _ in range(processes) for value in reports.get(timeout=GUARD)]
    for child in children:
        child.join(GUARD)
    assert [child.exitcode for child in children] == [0] * processes
    assert len(values) == processes * threads
    assert len({repr(value) for value in values}) == 1, f"callers got different values: {values}"
    with Cache(shared_url, namespace=namespace) as cache:
        assert cache.get("runs") == 1, "the function ran more than once"


def test_processes_racing_with_gets_and_cas_lose_no_update(
    shared_url: str, children: list[Any]
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    processes, rounds = 3, 200
    with Cache(shared_url, namespace=namespace) as cache:
        cache.set("shared", [])
    reports, go = SPAWN.Queue(), SPAWN.Event()
    for _ in range(processes):
        child = SPAWN.Process(target=cas_child, args=(shared_url, namespace, rounds, go, reports))
        child.start()
        children.append(child)
    go.set()
    won = dict(reports.get(timeout=GUARD) for _ in range(processes))
    for child in children:
        child.join(GUARD)
    assert [child.exitcode for child in children] == [0] * processes
    with Cache(shared_url, namespace=namespace) as cache:
        final = cache.get("shared")
    # every cas that returned True is in the list once, and nothing else is
    assert {pid: final.count(pid) for pid in won} == won
    assert len(final) == sum(won.values())


def test_a_process_that_dies_holding_the_lock_leaves_no_stuck_key(
    shared_url: str, children: list[Any]
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    computing = SPAWN.Event()
    child = SPAWN.Process(target=dying_holder, args=(shared_url, namespace, computing))
    child.start()
    children.append(child)
    assert computing.wait(GUARD), "the child never started computing"
    child.kill()
    child.join(GUARD)

    cache = Cache(shared_url, namespace=namespace)
    calls = []

    @cache.cached(ttl=600, name="mp.victim", lock_ttl=2)
    def victim() -> str:
        calls.append(1)
        return "computed after the holder died"

    assert victim() == "computed after the holder died"  # waits for the dead lock to expire
    assert victim() == "computed after the holder died"
    assert calls == [1], "the value was not cached once the dead holder's lock expired"
    cache.close()


def test_call_keys_do_not_depend_on_the_process_hash_seed(
    shared_url: str, children: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    done = SPAWN.Queue()
    other_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    monkeypatch.setenv("PYTHONHASHSEED", other_seed)  # the spawned interpreter gets it
    child = SPAWN.Process(target=fill_with_set_argument, args=(shared_url, namespace, done))
    child.start()
    children.append(child)
    assert done.get(timeout=GUARD)
    child.join(GUARD)

    cache = Cache(shared_url, namespace=namespace)

    @cache.cached(ttl=600, name="mp.sets")
    def describe(tags: frozenset[str], options: dict[str, int]) -> str:
        return "computed in the parent"

    options = dict(reversed([(f"o{n}", n) for n in range(50)]))
    assert describe(frozenset(f"tag-{n}" for n in range(50)), options) == "computed in the child"
    cache.close()


def test_a_cache_sent_to_another_process_opens_the_same_servers(
    shared_url: str, children: list[Any]
) -> None:
    cache = Cache(shared_url, namespace=f"t-{uuid.uuid4().hex}", default_ttl=600)
    done = SPAWN.Queue()
    child = SPAWN.Process(target=_set_through, args=(cache, done))
    child.start()
    children.append(child)
    assert done.get(timeout=GUARD)
    child.join(GUARD)
    assert cache.get("from the child") == [1, 2]
    cache.close()


def _set_through(cache: Cache, done: Any) -> None:
    cache.set("from the child", [1, 2])
    done.put(True)


def test_a_memory_cache_cannot_be_sent_to_another_process() -> None:
    import pickle

    with pytest.raises(TypeError, match="memory"):
        pickle.dumps(Cache("memory://"))
