"""The registry: queues found without knowing their names, workers that beat and disappear by
themselves; on a real redis-server (and a Redis Cluster), and in memory."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
import redis
from processes import Workers, fresh_name, wait_until

import distqueue
from distqueue.heartbeat import Heartbeat
from distqueue.registry import QUEUES_KEY, WORKER_KEY_PREFIX, WORKERS_KEY, Registry, open_registry
from distqueue.worker import Worker


def entries(url: str) -> dict[str, Any]:
    registry = open_registry(url)
    try:
        return {entry.name: entry for entry in registry.queues()}
    finally:
        registry.close()


def live_workers(url: str) -> dict[str, Any]:
    registry = open_registry(url)
    try:
        return {worker.id: worker for worker in registry.workers()}
    finally:
        registry.close()


def test_opening_a_queue_records_its_kind_and_settings(redis_url: str) -> None:
    name, lifo, prio, simple = (fresh_name("reg") for _ in range(4))
    distqueue.Queue(7, url=redis_url, name=name, visibility_timeout=12.5, max_deliveries=3).close()
    distqueue.LifoQueue(url=redis_url, name=lifo).close()
    distqueue.PriorityQueue(float("inf"), url=redis_url, name=prio).close()  # type: ignore[arg-type]
    distqueue.SimpleQueue(url=redis_url, name=simple).close()
    found = entries(redis_url)
    entry = found[name]
    assert (entry.kind, entry.maxsize, entry.visibility_timeout, entry.max_deliveries) == (
        "fifo",
        7,
        12.5,
        3,
    )
    assert entry.serializer == "json" and entry.readable and entry.opened is not None
    assert found[lifo].kind == "lifo"
    assert (found[prio].kind, found[prio].maxsize) == ("priority", "inf")
    assert found[simple].simple and found[simple].kind == "fifo"


def test_queues_of_the_memory_backend_are_recorded_in_the_process() -> None:
    name = fresh_name("memreg")
    q: distqueue.PriorityQueue[Any] = distqueue.PriorityQueue(3, url="memory://", name=name)
    found = entries("memory://")
    assert (found[name].kind, found[name].maxsize) == ("priority", 3)
    q.close()


def test_a_queue_opened_on_a_server_that_is_down_is_still_made(unused_port: int) -> None:
    # the registration is lost, the queue's own first call says the server is down
    q: distqueue.Queue[int] = distqueue.Queue(
        url=f"redis://127.0.0.1:{unused_port}/0?retry_window=0.1", name="x"
    )
    with pytest.raises(distqueue.BackendConnectionError):
        q.put(1)
    q.close()


@pytest.fixture
def unused_port() -> int:
    from servers import free_port

    return free_port()


def test_garbage_in_the_registry_is_listed_as_unreadable(redis_url: str) -> None:
    bad = {
        fresh_name("bad-json"): b"{not json",
        fresh_name("bad-bytes"): b"\xff\xfe\x00",
        fresh_name("bad-kind"): b'{"kind": "stack"}',
        fresh_name("bad-type"): b"[1, 2, 3]",
        fresh_name("bad-maxsize"): b'{"kind": "fifo", "maxsize": [1]}',
    }
    with redis.Redis.from_url(redis_url) as raw:
        for name, value in bad.items():
            raw.hset(QUEUES_KEY, name, value)
        raw.hset(QUEUES_KEY, b"\xc3\x28" + fresh_name().encode(), b'{"kind": "fifo"}')
    found = entries(redis_url)
    for name in bad:
        assert found[name].error is not None and "unreadable" in found[name].error, found[name]
    assert any(e.error and "UTF-8" in e.error for e in found.values())


def test_a_worker_beats_while_it_runs_and_leaves_when_it_stops(redis_url: str) -> None:
    name = fresh_name("beat")
    queue: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name, visibility_timeout=30)
    release = threading.Event()
    started = threading.Event()

    def handle(item: Any) -> None:
        started.set()
        release.wait(30)

    worker = Worker(queue, handle, concurrency=2, heartbeat=0.2, poll=0.1)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        queue.put("slow")
        assert started.wait(30)

        def described() -> Any:
            mine = [w for w in live_workers(redis_url).values() if w.queue == name]
            return mine and mine[0].current and mine[0]

        seen = wait_until(described, "the worker's beat naming the item in hand")
        assert (seen.concurrency, seen.processed, seen.failed) == (2, 0, 0)
        assert seen.host and seen.pid and seen.started
        [held] = seen.current
        registry = open_registry(redis_url)
        try:
            lease_ids = {t.decode() for t in registry.client.zrange(f"dq:{{{name}}}:leases", 0, -1)}
        finally:
            registry.close()
        assert held["id"] in lease_ids
        release.set()
        wait_until(
            lambda: any(
                w.queue == name and w.processed == 1 for w in live_workers(redis_url).values()
            ),
            "a beat counting the item processed",
        )
    finally:
        release.set()
        worker.stop()
        thread.join(30)
    assert not [w for w in live_workers(redis_url).values() if w.queue == name]
    queue.close()


def test_a_worker_that_stops_beating_disappears_by_itself(redis_url: str) -> None:
    registry = open_registry(redis_url)
    try:
        beat = Heartbeat(registry, lambda: {"queue": "q", "host": "h"}, interval=0.1)
        assert beat.beat()  # once, then never again: as a process killed outright
        assert beat.id in live_workers(redis_url)
        wait_until(lambda: beat.id not in live_workers(redis_url), "the beat to run out")
        other = Heartbeat(registry, lambda: {"queue": "q"}, interval=5)
        other.beat()  # any beat drops the index entries that ran out
        assert registry.client.zscore(WORKERS_KEY, beat.id) is None
        other.stop()
        assert registry.client.zscore(WORKERS_KEY, other.id) is None
    finally:
        registry.close()


def test_a_worker_process_killed_outright_disappears_by_itself(
    workers: Workers, redis_url: str
) -> None:
    name = fresh_name("killed")
    process = workers.start(redis_url, name, "--heartbeat", "0.2", "taskfns:record")
    mine = wait_until(
        lambda: [w for w in live_workers(redis_url).values() if w.queue == name],
        "the worker's first beat",
    )
    assert mine[0].pid == process.pid
    process.send_signal(signal.SIGKILL)
    workers.wait_exit(process)
    wait_until(
        lambda: not [w for w in live_workers(redis_url).values() if w.queue == name],
        "the killed worker to disappear",
    )


def test_garbage_heartbeats_are_listed_as_unreadable(redis_url: str) -> None:
    worker_id = fresh_name("garbage-worker")
    with redis.Redis.from_url(redis_url) as raw:
        raw.zadd(WORKERS_KEY, {worker_id: 2**50})
        raw.set(WORKER_KEY_PREFIX + worker_id, b"\x00garbage", px=60_000)
    found = live_workers(redis_url)
    assert found[worker_id].error is not None
    assert "unreadable" in found[worker_id].error


def test_the_registry_works_on_a_redis_cluster(cluster_url: str) -> None:
    name = fresh_name("cluster-reg")
    distqueue.PriorityQueue(5, url=cluster_url, name=name).close()
    assert entries(cluster_url)[name].kind == "priority"
    registry = open_registry(cluster_url)
    try:
        beat = Heartbeat(registry, lambda: {"queue": name}, interval=5)
        beat.beat()
        assert live_workers(cluster_url)[beat.id].queue == name
        beat.stop()
        assert beat.id not in live_workers(cluster_url)
    finally:
        registry.close()


def test_the_memory_registry_keeps_workers_until_their_beat_runs_out() -> None:
    registry = Registry(None)
    beat = Heartbeat(registry, lambda: {"queue": "m"}, interval=0.05)
    beat.beat()
    assert beat.id in {w.id for w in registry.workers()}
    wait_until(lambda: beat.id not in {w.id for w in registry.workers()}, "the beat to run out")


def test_an_executors_reply_queue_stays_out_of_the_registry(redis_url: str) -> None:
    name = fresh_name("exec-reg")
    with distqueue.Executor(url=redis_url, queue=name, results="memory://"):
        found = entries(redis_url)
    assert name in found
    assert not [n for n in found if n.startswith(f"{name}:replies:")]
