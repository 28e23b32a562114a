"""``distqueue.aio.Cache``: the sync cache's contract, awaited, on memory, a real Redis and two
real memcached servers; ``@cached`` on ``async def`` functions, within one process and across
processes. Durations are never asserted; every wait has a generous limit."""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from servers import free_port

import distqueue
import distqueue.aio
from distqueue.kv.values import MISSING

GUARD = 60.0
SPAWN = multiprocessing.get_context("spawn")


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), GUARD))


def fresh() -> str:
    return f"t-{uuid.uuid4().hex}"


def test_every_call_of_the_sync_cache_is_there_awaited() -> None:
    public = {
        name
        for name, member in inspect.getmembers(distqueue.Cache, inspect.isfunction)
        if not name.startswith("_") and name not in {"close", "cached"}
    }
    missing = sorted(n for n in public if not hasattr(distqueue.aio.Cache, n))
    assert not missing, f"distqueue.aio.Cache lacks {missing}"
    not_async = sorted(
        n for n in public if not inspect.iscoroutinefunction(getattr(distqueue.aio.Cache, n))
    )
    assert not not_async, f"not async def: {not_async}"


def test_the_calls_behave_as_the_sync_cache_s(cache_url: str) -> None:
    namespace = fresh()

    async def main() -> None:
        async with distqueue.aio.Cache(cache_url, namespace=namespace) as cache:
            assert await cache.get("k", MISSING) is MISSING
            assert await cache.set("k", {"a": (1, 2)}, ttl=60)
            assert await cache.get("k") == {"a": (1, 2)}
            assert not await cache.add("k", "other")
            assert await cache.add("k2", b"bytes")
            assert await cache.get_many(["k", "k2", "none"]) == {"k": {"a": (1, 2)}, "k2": b"bytes"}
            mixed: dict[str | bytes, Any] = {"x": 1, b"y": "two"}
            assert await cache.set_many(mixed) == []
            assert await cache.incr("n", 5) == 5
            assert await cache.decr("n", 2) == 3
            assert await cache.touch("k", None)
            assert await cache.delete("k")
            assert not await cache.delete("k")
            big = b"x" * (3 * 1024 * 1024)  # chunked on memcached
            assert await cache.set("big", big)
            assert await cache.get("big") == big
            with pytest.raises(distqueue.SerializationError):
                await cache.set("bad", object())
            stats = cache.stats
            assert stats.hits >= 4 and stats.misses >= 1
            # the sync cache underneath (memory:// lives in it), and on servers any sync
            # cache of the same namespace, see the same values
            assert cache.sync.get("k2") == b"bytes"
            if cache_url != "memory://":
                with distqueue.Cache(cache_url, namespace=namespace) as sync:
                    assert sync.get("k2") == b"bytes"
                    sync.set("from-sync", [1])
                assert await cache.get("from-sync") == [1]

    run(main)


def test_many_tasks_missing_one_key_run_the_function_once(cache_url: str) -> None:
    async def main() -> None:
        async with distqueue.aio.Cache(cache_url, namespace=fresh()) as cache:
            runs: list[int] = []
            release = asyncio.Event()

            @cache.cached(ttl=600, name="aio.once")
            async def expensive(x: int) -> dict[str, int]:
                runs.append(x)
                await release.wait()
                return {"x": x}

            calls = [asyncio.ensure_future(expensive(7)) for _ in range(50)]
            while not runs:
                await asyncio.sleep(0)
            for _ in range(100):  # let every other caller reach its wait
                await asyncio.sleep(0)
            release.set()
            assert await asyncio.gather(*calls) == [{"x": 7}] * 50
            assert runs == [7]
            assert await expensive(7) == {"x": 7}
            assert runs == [7]
            assert await expensive(8) == {"x": 8}
            assert await expensive.invalidate(7)
            assert await expensive(7) == {"x": 7}
            assert runs == [7, 8, 7]
            assert await expensive.cache_clear()
            await expensive(8)
            assert runs == [7, 8, 7, 8]

    run(main)


def test_a_cancelled_caller_leaves_the_computation_to_finish_for_the_others(
    cache_url: str,
) -> None:
    async def main() -> None:
        async with distqueue.aio.Cache(cache_url, namespace=fresh()) as cache:
            runs: list[int] = []
            release = asyncio.Event()

            @cache.cached(ttl=600, name="aio.cancel")
            async def slow(x: int) -> int:
                runs.append(x)
                await release.wait()
                return x * 2

            leader = asyncio.ensure_future(slow(1))
            follower = asyncio.ensure_future(slow(1))
            while not runs:
                await asyncio.sleep(0)
            follower.cancel()
            with pytest.raises(asyncio.CancelledError):
                await follower
            release.set()
            assert await leader == 2
            assert await slow(1) == 2
            assert runs == [1]

    run(main)


def test_a_caller_cancelled_while_taking_the_lock_lets_go_of_it() -> None:
    """The lock's ``add`` is held up in its thread (a fault injected into the store) while the
    caller is cancelled; the lock it then takes for no one is released, so the next caller
    computes instead of waiting an hour for the lock to expire (beyond the test's limit)."""

    async def main() -> None:
        async with distqueue.aio.Cache("memory://", namespace=fresh()) as cache:
            backend = cache.sync._backend
            real_add = backend.add
            entered, proceed, added = threading.Event(), threading.Event(), threading.Event()

            def held_up_add(key: bytes, item: bytes, ttl: float | None) -> bool:
                if ttl is None:  # the function's generation, made at the first lookup
                    return real_add(key, item, ttl)
                entered.set()  # the lock, which lives lock_ttl seconds
                proceed.wait(GUARD)
                try:
                    return real_add(key, item, ttl)
                finally:
                    added.set()

            @cache.cached(ttl=60, name="aio.lock-cancel", lock_ttl=3600)
            async def compute() -> int:
                return 1

            backend.add = held_up_add  # type: ignore[method-assign]
            caller = asyncio.ensure_future(compute())
            await asyncio.get_running_loop().run_in_executor(None, entered.wait, GUARD)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            backend.add = real_add  # type: ignore[method-assign]
            proceed.set()  # the add goes through: the lock is taken, for a caller now gone
            await asyncio.get_running_loop().run_in_executor(None, added.wait, GUARD)
            assert await compute() == 1

    run(main)


def test_a_leader_that_raises_lets_the_next_caller_compute(cache_url: str) -> None:
    async def main() -> None:
        async with distqueue.aio.Cache(cache_url, namespace=fresh()) as cache:
            attempts: list[int] = []

            @cache.cached(ttl=600, name="aio.raises")
            async def flaky() -> str:
                attempts.append(1)
                await asyncio.sleep(0)
                if len(attempts) == 1:
                    raise RuntimeError("first attempt fails")
                return "ok"

            first, second = await asyncio.gather(flaky(), flaky(), return_exceptions=True)
            assert isinstance(first, RuntimeError)
            assert second == "ok"
            assert len(attempts) == 2

    run(main)


def test_a_dead_server_is_a_miss_and_cached_calls_still_run() -> None:
    port = free_port()  # nothing listens there

    async def main() -> None:
        url = f"redis://127.0.0.1:{port}/0?connect_timeout=0.5&socket_timeout=0.5"
        async with distqueue.aio.Cache(url, namespace=fresh()) as cache:

            @cache.cached(ttl=60, name="aio.down")
            async def compute(x: int) -> int:
                return x + 1

            assert await cache.get("k", MISSING) is MISSING
            assert not await cache.set("k", 1)
            assert await compute(1) == 2
            stats = cache.stats
            assert stats.server_errors >= 2 and stats.uncached_calls == 1

    run(main)


def test_decorating_what_is_not_async_or_has_no_name_is_a_type_error() -> None:
    cache = distqueue.aio.Cache("memory://")

    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match="not an async def"):
        cache.cached()(plain)  # type: ignore[arg-type]

    async def inner() -> int:
        return 1

    with pytest.raises(TypeError, match="under its own name"):
        cache.cached()(inner)
    cache.cached(name="inner-by-name")(inner)


def test_sync_and_async_functions_of_one_name_share_their_results(cache_url: str) -> None:
    if cache_url == "memory://":
        pytest.skip("memory:// is per cache object")
    namespace = fresh()
    with distqueue.Cache(cache_url, namespace=namespace) as sync:

        @sync.cached(ttl=60, name="shared.f")
        def f_sync(x: int) -> int:
            return x * 10

        assert f_sync(3) == 30

    async def main() -> None:
        async with distqueue.aio.Cache(cache_url, namespace=namespace) as cache:

            @cache.cached(ttl=60, name="shared.f")
            async def f_async(x: int) -> int:
                return -1  # never runs: the sync function's result is there

            assert await f_async(3) == 30

    run(main)


# -- across processes ----------------------------------------------------------------------------


def stampede_child(url: str, namespace: str, tasks: int, ready: Any, go: Any, out: Any) -> None:
    """Call the shared async cached function from ``tasks`` tasks at once; report the values."""

    async def main() -> list[Any]:
        async with distqueue.aio.Cache(url, namespace=namespace) as cache:

            @cache.cached(ttl=600, name="aio.mp.stampede", lock_ttl=GUARD)
            async def expensive(x: int) -> int:
                await cache.incr("runs", ttl=600)
                await asyncio.sleep(0.5)
                return x * 3

            ready.put(1)
            await asyncio.get_running_loop().run_in_executor(None, go.wait, GUARD)
            return list(await asyncio.gather(*(expensive(7) for _ in range(tasks))))

    out.put(asyncio.run(main()))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "memcached"])
def test_processes_missing_one_key_run_the_function_once(
    request: pytest.FixtureRequest, backend: str
) -> None:
    url = str(request.getfixturevalue(f"{backend}_url"))
    namespace = fresh()
    ready, go, out = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    children = [
        SPAWN.Process(target=stampede_child, args=(url, namespace, 10, ready, go, out))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=GUARD)
        go.set()
        values = [out.get(timeout=GUARD) for _ in children]
    finally:
        for child in children:
            child.join(GUARD)
            if child.is_alive():
                child.kill()
    assert values == [[21] * 10] * 3
    with distqueue.Cache(url, namespace=namespace) as cache:
        assert cache.get("runs") == 1
