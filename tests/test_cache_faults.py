"""The cache and the results store when the network misbehaves: a lost reply to a counter
update, a server that accepts connections and never answers, and the URL settings that bound
every call.

Faults come from :mod:`faults` (a TCP proxy in front of the real server that loses a reply or
goes silent) and :class:`faults.BlackHole` (a port that accepts and never answers). The bounds
checked are behaviour, with generous slack: a call ends near its timeout, not at a multiple
of it.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from faults import BlackHole, FaultyProxy
from pymemcache.client.base import Client

from distqueue import BackendConnectionError
from distqueue.cache import Cache, OutcomeUnknownError, ResultStore

SLACK = 3.0
"""Seconds a call may take beyond its documented bound (a busy test machine)."""


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/")[0].rsplit(":", 1)[1])


@pytest.fixture(params=["redis", "memcached"])
def server(request: pytest.FixtureRequest) -> tuple[str, int]:
    """``(scheme, port)`` of a real redis-server or memcached."""
    if request.param == "redis":
        return "redis", port_of(request.getfixturevalue("redis_url"))
    pair = request.getfixturevalue("memcached_pair")
    return "memcached", pair[0].port


def url_for(scheme: str, port: int, query: str = "") -> str:
    return f"{scheme}://127.0.0.1:{port}" + ("/0" if scheme == "redis" else "") + query


def counter_on_server(scheme: str, port: int, key: str) -> int | None:
    """The counter as the server holds it, read with a raw client."""
    if scheme == "redis":
        raw_redis = redis.Redis(port=port)
        try:
            value = raw_redis.get(key)
        finally:
            raw_redis.close()
    else:
        raw_memcached = Client(("127.0.0.1", port), connect_timeout=5, timeout=5)
        try:
            value = raw_memcached.get(key)
        finally:
            raw_memcached.close()
    return None if value is None else int(value)


@pytest.fixture
def proxy(server: tuple[str, int]) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(server[1])
    yield faulty
    faulty.close()


# -- counters and lost replies -------------------------------------------------------------------


def test_an_increment_whose_reply_is_lost_counts_once_on_redis(
    redis_url: str, namespace: str
) -> None:
    proxy = FaultyProxy(port_of(redis_url))
    try:
        with Cache(url_for("redis", proxy.port), namespace=namespace) as cache:
            assert cache.incr("created") == 1  # a connection in the pool
            for name, delta in (("created", 5), ("new", 7)):
                proxy.drop_reply()
                value = cache.incr(name, delta)
                assert proxy.lost.is_set(), "the proxy lost no reply: the test tested nothing"
                assert value == counter_on_server(
                    "redis", proxy.target_port, f"{namespace}:v:{name}"
                )
            assert (
                counter_on_server("redis", proxy.target_port, f"{namespace}:v:created"),
                value,
            ) == (6, 7)
            proxy.drop_reply()
            assert cache.decr("created", 2) == 4
            assert proxy.lost.is_set()
            assert counter_on_server("redis", proxy.target_port, f"{namespace}:v:created") == 4
    finally:
        proxy.close()


def test_an_update_whose_outcome_cannot_be_learnt_raises_outcome_unknown(
    server: tuple[str, int], proxy: FaultyProxy, namespace: str
) -> None:
    scheme, port = server
    url = url_for(scheme, proxy.port, "?socket_timeout=1&connect_timeout=1")
    with Cache(url, namespace=namespace) as cache:
        assert cache.incr("n") == 1
        proxy.drop_reply(then_black_hole=True)
        started = time.monotonic()
        with pytest.raises(OutcomeUnknownError, match="may or may not"):
            cache.incr("n", 10)
        assert time.monotonic() - started < 1 + 1 + SLACK
        assert proxy.lost.is_set()
        assert cache.stats.server_errors == 1
    # it did happen, once: what the caller was told it cannot know
    assert counter_on_server(scheme, port, f"{namespace}:v:n") == 11


def test_an_increment_on_memcached_is_never_sent_twice(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    proxy = FaultyProxy(memcached_pair[0].port)
    try:
        with Cache(url_for("memcached", proxy.port), namespace=namespace) as cache:
            assert cache.incr("n") == 1
            proxy.drop_reply()
            with pytest.raises(OutcomeUnknownError):
                cache.incr("n", 10)
            assert counter_on_server("memcached", proxy.target_port, f"{namespace}:v:n") == 11
        with Cache(url_for("memcached", proxy.port), namespace=namespace) as cache:
            assert cache.incr("n") == 12
    finally:
        proxy.close()


def test_an_increment_that_cannot_connect_changed_nothing_and_is_none(
    server: tuple[str, int], namespace: str
) -> None:
    scheme, _ = server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with Cache(url_for(scheme, port), namespace=namespace) as cache:
        assert cache.incr("n") is None
        assert cache.decr("n") is None
        assert cache.stats.server_errors == 2


# -- a server that never answers -----------------------------------------------------------------


def incr_fails(cache: Cache) -> bool:
    """``None`` if the update was never sent (Redis checks a new connection first), else
    ``OutcomeUnknownError`` (memcached sends at once: a silent server may have applied it)."""
    try:
        return cache.incr("n") is None
    except OutcomeUnknownError:
        return True


CACHE_CALLS: dict[str, Callable[[Cache], Any]] = {
    "get": lambda cache: cache.get("k", "miss") == "miss",
    "get_many": lambda cache: cache.get_many(["a", "b"]) == {},
    "set": lambda cache: cache.set("k", "v") is False,
    "set_large": lambda cache: cache.set("k", b"x" * 3 * 1024 * 1024) is False,
    "incr": incr_fails,
    "delete": lambda cache: cache.delete("k") is False,
}


@pytest.mark.parametrize("call", sorted(CACHE_CALLS))
@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_a_cache_call_to_a_silent_server_is_a_miss_within_its_timeouts(
    black_hole: BlackHole, scheme: str, call: str
) -> None:
    url = url_for(scheme, black_hole.port, "?connect_timeout=1&socket_timeout=2")
    with Cache(url) as cache:
        started = time.monotonic()
        outcome = CACHE_CALLS[call](cache)
        elapsed = time.monotonic() - started
        assert outcome, f"{call} did not report the failure as documented"
        assert cache.stats.server_errors >= 1
    assert black_hole.connections >= 1, "the call never reached the silent server"
    # redis-py's nested retries made this 4 to 8 times the timeout
    assert elapsed < 1 + 2 + SLACK, f"{call} took {elapsed:.1f} s"


RESULT_CALLS: dict[str, Callable[[ResultStore], Any]] = {
    "wait": lambda store: store.wait("t", timeout=1),
    "mark_pending": lambda store: store.mark_pending("t"),
    "set_result": lambda store: store.set_result("t", 1),
    "fetch_many": lambda store: store.fetch_many(["t"])["t"],
    "forget": lambda store: store.forget("t"),
}


@pytest.mark.parametrize("call", sorted(RESULT_CALLS))
@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_a_results_call_to_a_silent_server_raises_within_its_timeouts(
    black_hole: BlackHole, scheme: str, call: str
) -> None:
    url = url_for(scheme, black_hole.port, "?connect_timeout=1&socket_timeout=2")
    with ResultStore(url) as store:
        started = time.monotonic()
        with pytest.raises(BackendConnectionError):
            outcome = RESULT_CALLS[call](store)
            if isinstance(outcome, Exception):  # fetch_many reports it per id
                raise outcome
        elapsed = time.monotonic() - started
    assert black_hole.connections >= 1
    bound = 1 + 2 + (1 if call == "wait" else 0)  # wait: plus its own timeout
    assert elapsed < bound + SLACK, f"{call} took {elapsed:.1f} s"


# -- settings in the URL -------------------------------------------------------------------------


def test_timeouts_in_the_url_are_used(black_hole: BlackHole) -> None:
    # With the defaults (3 s to answer) this would take over 3 s.
    for scheme in ("redis", "memcached"):
        url = url_for(scheme, black_hole.port, "?socket_timeout=0.2&connect_timeout=0.2")
        with Cache(url) as cache:
            started = time.monotonic()
            assert cache.get("k", "miss") == "miss"
            assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?timeout=1", "unknown query parameter 'timeout'"),
        ("?password=x&dbx=1", "unknown query parameters 'password', 'dbx'"),
        ("?socket_timeout=0", "socket_timeout must be a positive"),
        ("?socket_timeout=-1", "socket_timeout must be a positive"),
        ("?socket_timeout=inf", "socket_timeout must be a positive"),
        ("?connect_timeout=soon", "not a number of seconds"),
        ("?socket_timeout=1&socket_timeout=2", "given twice"),
    ],
)
@pytest.mark.parametrize("scheme", ["redis", "memcached"])
def test_a_url_setting_that_is_unknown_or_wrong_is_refused(
    scheme: str, query: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Cache(url_for(scheme, 1, query))
    with pytest.raises(ValueError, match=message):
        ResultStore(url_for(scheme, 1, query))


def test_a_setting_given_in_the_url_and_as_an_argument_must_agree() -> None:
    with pytest.raises(ValueError, match="give it once"):
        Cache("redis://127.0.0.1:1/0?socket_timeout=2", timeout=3)
    Cache("redis://127.0.0.1:1/0?socket_timeout=2", timeout=2).close()
    with pytest.raises(ValueError, match="use 'memory://'"):
        Cache("memory://?socket_timeout=2")


def test_a_unix_socket_url_takes_its_database_and_the_settings(tmp_path: Any) -> None:
    path = tmp_path / "none.sock"
    cache = Cache(f"unix://{path}?db=3&socket_timeout=1")
    assert cache.get("k", "miss") == "miss"  # nothing listens: a miss
    cache.close()
    with pytest.raises(ValueError, match="unknown query parameter 'dbx'"):
        Cache(f"unix://{path}?dbx=3")
