"""``distqueue.aio.Cache`` on Redis, awaited on redis-py's asyncio clients: no thread is used,
lost replies are retried without doubling, a server down or restarted is a miss (not a hang),
a cancelled call leaves the client usable, stampede protection holds across event loops, and
blocking and asyncio caches share values. Real servers only (one server, the Cluster, the
Sentinel group); faults from :mod:`faults`. Durations are never asserted; every wait has a
generous limit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from faults import FaultyProxy
from servers import RedisServer, free_port, require_binary

import distqueue
import distqueue.aio
import distqueue.url
from distqueue.kv.values import MISSING

GUARD = 60.0


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), GUARD))


def fresh() -> str:
    return f"t-{uuid.uuid4().hex}"


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/")[0].rsplit(":", 1)[1])


def raw_get(port: int, key: str) -> bytes | None:
    with redis.Redis(port=port) as raw:
        value: bytes | None = raw.get(key)
        return value


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


class NoThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor that refuses work: anything sent to a thread fails the test."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a call went to the event loop's default executor: {args[:1]}")


def test_on_redis_every_call_is_awaited_without_a_thread(any_redis_url: str) -> None:
    namespace = fresh()
    threads_before = set(threading.enumerate())
    loop = asyncio.new_event_loop()
    refusing = NoThreads(1)
    loop.set_default_executor(refusing)

    async def main() -> None:
        async with distqueue.aio.Cache(any_redis_url, namespace=namespace) as cache:
            assert await cache.set("k", {"a": 1}, ttl=60)
            assert await cache.get("k") == {"a": 1}
            assert await cache.add("new", b"x")
            assert await cache.append("new", b"yz")
            assert await cache.prepend("new", b"w")
            assert await cache.get("new") == b"wxyz"
            value, token = await cache.gets("k")
            assert value == {"a": 1} and token is not None
            assert await cache.cas("k", {"a": 2}, token)
            assert await cache.replace("k", {"a": 3})
            assert await cache.set_many({f"m{i}": i for i in range(20)}) == []
            found = await cache.get_many([f"m{i}" for i in range(20)])
            assert found == {f"m{i}": i for i in range(20)}
            assert await cache.incr("n", 3) == 3
            assert await cache.decr("n", 1) == 2
            assert await cache.touch("k", 30)
            assert await cache.delete("k")
            runs: list[int] = []

            @cache.cached(ttl=60, name="aio.nothread")
            async def double(x: int) -> int:
                runs.append(x)
                return 2 * x

            assert await asyncio.gather(*(double(4) for _ in range(10))) == [8] * 10
            assert runs == [4]
            assert await double.invalidate(4)
            assert await double.cache_clear()
            assert cache.stats.server_errors == 0
        new_threads = set(threading.enumerate()) - threads_before
        assert not new_threads, f"threads were started: {new_threads}"

    try:
        loop.run_until_complete(asyncio.wait_for(main(), GUARD))
    finally:
        loop.close()
        refusing.shutdown()


def test_blocking_and_asyncio_caches_share_values_counters_and_tokens(any_redis_url: str) -> None:
    namespace = fresh()
    with distqueue.Cache(any_redis_url, namespace=namespace) as sync:
        sync.set("from-sync", [1, 2])
        assert sync.incr("n", 5) == 5

        async def main() -> None:
            async with distqueue.aio.Cache(any_redis_url, namespace=namespace) as cache:
                assert await cache.get("from-sync") == [1, 2]
                assert await cache.incr("n", 2) == 7
                assert await cache.set("from-async", "text")
                _, token = await cache.gets("from-sync")
                assert token is not None
                assert sync.cas("from-sync", [3], token)  # an asyncio token, used blocking
                assert not await cache.cas("from-sync", [4], token)  # changed since
                with pytest.raises(distqueue.WrongTypeError):
                    await cache.incr("from-sync")

        run(main)
        assert sync.get("from-async") == "text"
        assert sync.get("n") == 7
        assert sync.get("from-sync") == [3]


# -- lost replies -----------------------------------------------------------------------------


def test_a_lost_reply_of_an_incr_is_retried_without_counting_twice(
    redis_url: str,
) -> None:
    namespace = fresh()
    proxy = FaultyProxy(port_of(redis_url))

    async def main() -> None:
        async with distqueue.aio.Cache(proxy.url(), namespace=namespace) as cache:
            assert await cache.incr("created") == 1  # a connection in the pool
            for name, delta in (("created", 5), ("new", 7)):
                proxy.drop_reply()
                value = await cache.incr(name, delta)
                assert proxy.lost.is_set(), "the proxy lost no reply: the test tested nothing"
                proxy.lost.clear()
                on_server = raw_get(proxy.target_port, f"{namespace}:v:{name}")
                assert on_server is not None and value == int(on_server)
            assert raw_get(proxy.target_port, f"{namespace}:v:created") == b"6"
            proxy.drop_reply()
            assert await cache.decr("created", 2) == 4
            assert proxy.lost.is_set()
            proxy.lost.clear()
            assert await cache.set("bytes", b"ab")
            proxy.drop_reply()
            assert await cache.append("bytes", b"c")
            assert proxy.lost.is_set()
            assert await cache.get("bytes") == b"abc"  # appended once
            assert cache.stats.server_errors == 0

    try:
        run(main)
    finally:
        proxy.close()


def test_an_incr_whose_outcome_cannot_be_learnt_raises_outcome_unknown(redis_url: str) -> None:
    namespace = fresh()
    proxy = FaultyProxy(port_of(redis_url))

    async def main() -> None:
        url = proxy.url("socket_timeout=1&connect_timeout=1")
        async with distqueue.aio.Cache(url, namespace=namespace) as cache:
            assert await cache.incr("n") == 1
            proxy.drop_reply(then_black_hole=True)
            with pytest.raises(distqueue.OutcomeUnknownError, match="may or may not"):
                await cache.incr("n", 10)
            assert proxy.lost.is_set()
            assert cache.stats.server_errors == 1

    try:
        run(main)
    finally:
        proxy.close()
    # it did happen, once: what the caller was told it cannot know
    assert raw_get(port_of(redis_url), f"{namespace}:v:n") == b"11"


# -- servers down and back ----------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_binary("redis-server"), tmp_path)
    yield server
    server.kill()


def test_a_killed_server_is_a_miss_and_the_cache_works_again_once_it_is_back(
    own_redis: RedisServer,
) -> None:
    url = own_redis.url + "?retry_window=0.5&connect_timeout=1&socket_timeout=2"

    async def main() -> None:
        async with distqueue.aio.Cache(url, namespace=fresh(), dead_retry=0.05) as cache:
            runs: list[int] = []

            @cache.cached(ttl=60, name="aio.restart")
            async def compute(x: int) -> int:
                runs.append(x)
                return x + 1

            assert await cache.set("k", 1)
            assert await compute(1) == 2
            own_redis.kill()
            assert await cache.get("k", MISSING) is MISSING
            assert not await cache.set("k", 2)
            assert await compute(1) == 2  # run without the cache
            assert runs == [1, 1]
            stats = cache.stats
            assert stats.server_errors >= 3 and stats.uncached_calls == 1
            own_redis.start()  # empty: nothing was persisted
            deadline = time.monotonic() + GUARD
            while not await cache.set("k", 3):  # dead_retry passes, then a fresh connection
                assert time.monotonic() < deadline, "the cache never came back"
                await asyncio.sleep(0.05)
            assert await cache.get("k") == 3
            assert await cache.incr("n") == 1

    run(main)


def test_a_counter_update_to_a_server_that_is_not_there_is_none() -> None:
    port = free_port()  # nothing listens there

    async def main() -> None:
        url = f"redis://127.0.0.1:{port}/0?retry_window=0.2&connect_timeout=0.5"
        async with distqueue.aio.Cache(url, namespace=fresh()) as cache:
            assert await cache.incr("n") is None  # never sent: nothing changed
            assert await cache.get("n", MISSING) is MISSING
            assert cache.stats.server_errors == 2

    run(main)


# -- cancellation -------------------------------------------------------------------------------


def test_a_call_cancelled_while_awaiting_its_reply_leaves_the_client_usable(
    redis_url: str,
) -> None:
    """The proxy swallows replies while an ``incr`` is awaited; the server has run it (seen
    with a raw client) when the call is cancelled. The next calls on the same cache get their
    own replies, never the late reply of the cancelled one."""
    namespace = fresh()
    proxy = FaultyProxy(port_of(redis_url))
    key = f"{namespace}:v:n"

    async def main() -> None:
        url = proxy.url("socket_timeout=30")
        async with distqueue.aio.Cache(url, namespace=namespace) as cache:
            assert await cache.incr("n") == 1
            proxy.black_hole()
            call = asyncio.ensure_future(cache.incr("n", 10))
            deadline = time.monotonic() + GUARD
            while raw_get(proxy.target_port, key) != b"11":
                assert time.monotonic() < deadline, "the incr never reached the server"
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            proxy.heal()
            assert await cache.incr("n", 100) == 111
            assert await cache.get("n") == 111
            assert await cache.set("k", "v")
            assert await cache.get("k") == "v"

    try:
        run(main)
    finally:
        proxy.close()


def test_a_cached_call_cancelled_while_taking_its_lock_lets_go_of_it(redis_url: str) -> None:
    """The lock's ``SET NX`` reaches the server but its reply is held back when the caller is
    cancelled: the lock it holds for no one is let go, so the next caller computes at once
    instead of waiting an hour for the lock to expire (beyond the test's limit)."""
    namespace = fresh()
    proxy = FaultyProxy(port_of(redis_url))

    async def main() -> None:
        async with distqueue.aio.Cache(
            proxy.url("socket_timeout=30"), namespace=namespace
        ) as cache:

            @cache.cached(ttl=60, name="aio.lock-cancel", lock_ttl=3600)
            async def compute() -> int:
                return 1

            assert await compute.cache_clear()  # the function's generation, made now
            proxy.delay_reply(10, marker=b"+OK")  # the reply of the lock's SET NX
            caller = asyncio.ensure_future(compute())
            with redis.Redis(port=proxy.target_port) as raw:
                deadline = time.monotonic() + GUARD
                while not raw.keys(f"{namespace}:l*"):
                    assert time.monotonic() < deadline, "the lock was never taken"
                    await asyncio.sleep(0.01)
            assert proxy.lost.is_set()
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
            assert await compute() == 1

    try:
        run(main)
    finally:
        proxy.close()


# -- stampedes across event loops -----------------------------------------------------------------


def test_two_event_loops_missing_one_key_run_the_function_once(redis_url: str) -> None:
    """Two threads, each with its own event loop and its own cache: the second waits on the
    cache's lock (it has missed) while the first computes; the function runs once."""
    namespace = fresh()
    runs: list[str] = []
    second_missed = threading.Event()
    results: dict[str, Any] = {}

    def caller(who: str, started: threading.Event | None) -> None:
        async def main() -> int:
            async with distqueue.aio.Cache(redis_url, namespace=namespace) as cache:

                @cache.cached(ttl=600, name="aio.loops", lock_ttl=GUARD)
                async def expensive() -> int:
                    runs.append(who)
                    if started is not None:
                        started.set()
                    # hold the lock until the other caller has missed and waits
                    await asyncio.get_running_loop().run_in_executor(
                        None, second_missed.wait, GUARD
                    )
                    return 42

                if started is None:  # the second caller: report its miss
                    task = asyncio.ensure_future(expensive())
                    deadline = time.monotonic() + GUARD
                    while cache.stats.misses < 1:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.005)
                    second_missed.set()
                    return await task
                return await expensive()

        try:
            results[who] = asyncio.run(asyncio.wait_for(main(), GUARD))
        except BaseException as exc:  # reported below
            results[who] = exc

    first_started = threading.Event()
    first = threading.Thread(target=caller, args=("first", first_started))
    first.start()
    assert first_started.wait(GUARD)
    second = threading.Thread(target=caller, args=("second", None))
    second.start()
    first.join(GUARD)
    second.join(GUARD)
    assert results == {"first": 42, "second": 42}
    assert runs == ["first"]


# -- garbage in our keys ------------------------------------------------------------------------


def test_garbage_under_the_cache_s_keys_is_a_miss(any_redis_url: str) -> None:
    """Values written by something else under the cache's keys: undecodable bytes, a manifest
    naming chunks that are not there, a Redis list. Each is a miss (counted), never an
    exception or a hang; a counter update on such a value is ``WrongTypeError``."""
    namespace = fresh()
    with distqueue.Cache(any_redis_url, namespace=namespace) as sync:
        sync.set("plain", "fine")  # the same keys, through the blocking backend

    async def main() -> None:
        async with distqueue.aio.Cache(any_redis_url, namespace=namespace) as cache:
            client = distqueue.url.make_redis_client(any_redis_url)
            try:
                client.set(f"{namespace}:v:bytes", b"\xff\x00not a frame")
                client.set(f"{namespace}:v:manifest", b"#garbage manifest")
                client.rpush(f"{namespace}:v:list", b"x")
            finally:
                client.close()
            for key in ("bytes", "manifest", "list"):
                assert await cache.get(key, MISSING) is MISSING, key
            found = await cache.get_many(["bytes", "manifest", "plain"])
            assert found == {"plain": "fine"}
            with pytest.raises(distqueue.WrongTypeError):
                await cache.incr("list")
            stats = cache.stats
            assert stats.corrupt_values == 4  # bytes and manifest, by get and by get_many
            assert stats.server_errors == 1  # the list: the server refused GET on it

    run(main)
