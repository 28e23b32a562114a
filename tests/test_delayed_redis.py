"""Scheduled items on a real Redis server: they outlive a restart (AOF), and garbage where
their keys live is an error that names the key, never a silent loss."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from servers import RedisServer, require_binary

import distqueue
from distqueue.backends.base import Kind
from distqueue.backends.redis.keys import QueueKeys


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(require_binary("redis-server"), directory, appendonly=True)
    yield server
    server.kill()


@pytest.mark.parametrize("cls", [distqueue.Queue, distqueue.PriorityQueue])
def test_scheduled_items_and_dedup_keys_survive_a_crash_with_aof(
    aof_redis: RedisServer, cls: Any
) -> None:
    q = cls(url=aof_redis.url, name="survivor")
    start = time.monotonic()
    q.put_many([(1, "a"), (2, "b")], delay=1.0)
    assert q.put((0, "k"), delay=1.0, dedup_key="once", dedup_for=60) is True
    aof_redis.kill()  # kill -9: only what reached the AOF is left
    aof_redis.start()
    assert q.scheduled() == 3 and q.unfinished_tasks == 3
    assert q.put((0, "k"), dedup_key="once", dedup_for=60) is False
    got = [q.get(timeout=30) for _ in range(3)]
    assert time.monotonic() - start >= 1.0 - 0.002
    assert sorted(got) == [(0, "k"), (1, "a"), (2, "b")]
    q.close()


def test_garbage_in_the_schedule_key_is_a_wrong_type_error(redis_url: str) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name="garbage-sched")
    q.put("x", delay=60)
    client = redis.Redis.from_url(redis_url)
    sched = QueueKeys("garbage-sched", Kind.FIFO).sched
    client.delete(sched)
    client.set(sched, "not a zset")
    with pytest.raises(distqueue.WrongTypeError) as caught:
        q.get(timeout=0.1)
    assert caught.value.key == sched
    client.delete(sched)
    q.delete()
    q.close()
    client.close()


def _script_runs(client: Any) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall")
    )


@pytest.mark.parametrize("held_by", ["schedule", "rate", "pause"])
def test_a_consumer_held_back_waits_on_the_server_without_spinning(
    redis_url: str, held_by: str
) -> None:
    """Over a 1.5 s wait that cannot end with an item, the consumer runs its take script a
    handful of times (each wait lasts until the server said something may change), not in a
    loop."""
    name = f"held-{held_by}-{time.monotonic_ns()}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    if held_by == "schedule":
        q.put("later", delay=60)
    elif held_by == "rate":
        q.set_limits(rate=1, per=60)
        q.put_many(["first", "second"])
        assert q.get_nowait() == "first"
    else:
        q.put("x")
        q.pause(60)
    client = redis.Redis.from_url(redis_url)
    before = _script_runs(client)
    with pytest.raises(distqueue.Empty):
        q.get(timeout=1.5)
    runs = _script_runs(client) - before
    assert 1 <= runs <= 3, runs
    client.close()
    q.delete()
    q.close()
