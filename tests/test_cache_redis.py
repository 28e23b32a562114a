"""What only the Redis backend of the cache has: its keys as redis-cli shows them, counters as
Redis integers, and waiting for a result by a blocking command instead of polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from distqueue.cache import Cache, ResultStore, ResultTimeout

GUARD = 60.0


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex}"


def test_values_are_plain_strings_with_a_ttl(
    redis_url: str, raw: redis.Redis, namespace: str
) -> None:
    with Cache(redis_url, namespace=namespace) as cache:
        cache.set("user:42", {"name": "Ada"}, ttl=60)
        cache.set("forever", 1, ttl=None)
        cache.set("text", "caf\u00e9")
    assert raw.get(f"{namespace}:v:user:42") == b'={"name":"Ada"}'
    assert raw.get(f"{namespace}:v:forever") == b"1"
    assert raw.get(f"{namespace}:v:text") == "scaf\u00e9".encode()
    assert 0 < raw.pttl(f"{namespace}:v:user:42") <= 60_000
    assert raw.ttl(f"{namespace}:v:forever") == -1


def test_counters_are_redis_integers(redis_url: str, raw: redis.Redis, namespace: str) -> None:
    with Cache(redis_url, namespace=namespace) as cache:
        cache.incr("hits", 5)
        raw.incrby(f"{namespace}:v:hits", 2)
        assert cache.get("hits") == 7
        assert cache.decr("hits", 100) == 0


def test_an_increment_past_the_counter_range_is_refused_and_changes_nothing(
    redis_url: str, namespace: str
) -> None:
    with Cache(redis_url, namespace=namespace) as cache:
        cache.set("n", 2**63 - 1)
        assert cache.incr("n") is None
        assert cache.stats.server_errors == 1
        assert cache.get("n") == 2**63 - 1


def test_a_result_pushes_a_wake_up_token(redis_url: str, raw: redis.Redis, namespace: str) -> None:
    with ResultStore(redis_url, namespace=namespace, ttl=60) as store:
        store.mark_pending("t")
        assert raw.get(f"{namespace}:r:{{t}}") == b"~"
        assert raw.llen(f"{namespace}:n:{{t}}") == 0
        store.set_result("t", 1)
        assert raw.llen(f"{namespace}:n:{{t}}") == 1
        assert 0 < raw.pttl(f"{namespace}:n:{{t}}") <= 60_000
        store.forget("t")
        assert not raw.exists(f"{namespace}:n:{{t}}", f"{namespace}:r:{{t}}")


def test_a_waiter_blocks_in_redis_instead_of_polling(
    redis_url: str, raw: redis.Redis, namespace: str
) -> None:
    with ResultStore(redis_url, namespace=namespace, ttl=60) as store:
        store.mark_pending("t")
        raw.config_resetstat()
        with pytest.raises(ResultTimeout):
            store.wait("t", timeout=1.0)
        stats = raw.info("commandstats")
        # One read, one blocking command for the whole second, one read after it.
        assert stats.get("cmdstat_get", {}).get("calls", 0) <= 3, stats
        assert stats.get("cmdstat_brpoplpush", {}).get("calls", 0) <= 2, stats


def test_a_blocked_waiter_is_woken_by_the_token(redis_url: str, namespace: str) -> None:
    with ResultStore(redis_url, namespace=namespace, ttl=60) as store:
        store.mark_pending("t")
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(store.wait("t", timeout=GUARD)))
        waiter.start()
        time.sleep(0.3)
        store.set_result("t", "woken")
        waiter.join(GUARD)
        assert [outcome.value for outcome in got] == ["woken"]
