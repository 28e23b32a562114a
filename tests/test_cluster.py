"""Redis Cluster: URLs, scripts that keep to their slot, queues spread over shards, and what
happens to a queue while its slot moves or its master dies.

The behavioural and lease suites also run on the cluster (the ``cluster`` backend of
conftest.py); this module holds what only a cluster has. The cluster is started once per
session (tests/cluster.py); a test that kills or moves something leaves it healthy again.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from importlib import resources
from typing import Any

import pytest
import redis
from cluster import Cluster
from failover import assert_nothing_lost, run_through
from threads import assert_still_running, run_in_thread, wait_until_blocked

import distqueue
import distqueue.aio
from distqueue.backends.connection import RedisOptions
from distqueue.url import cluster_connection, redis_options, sentinel_connection
from distqueue.worker import Worker

pytestmark = pytest.mark.redis


# -- URLs ----------------------------------------------------------------------------------------


def test_a_cluster_url_names_nodes_credentials_and_tls() -> None:
    nodes, connection = cluster_connection("rediss+cluster://u:p%40ss@h1:7000,h2,[::1]:7002")
    assert nodes == [("h1", 7000), ("h2", 6379), ("::1", 7002)]
    assert connection == {"username": "u", "password": "p@ss", "ssl": True}
    assert cluster_connection("redis+cluster://h1:7000/0")[1] == {}
    assert redis_options("redis+cluster://h1:7000?retry_window=10").retry_window == 10


def test_a_sentinel_url_names_sentinels_service_db_and_both_credentials() -> None:
    sentinels, service, master, sentinel = sentinel_connection(
        "rediss+sentinel://:secret@s1:26380,s2/mymaster/3"
        "?sentinel_password=s%20pw&sentinel_username=watcher&socket_timeout=2"
    )
    assert sentinels == [("s1", 26380), ("s2", 26379)]
    assert service == "mymaster"
    assert master == {"db": 3, "password": "secret", "ssl": True}
    assert sentinel == {"password": "s pw", "username": "watcher", "ssl": True}
    options = redis_options("redis+sentinel://s1/mymaster?sentinel_password=x&socket_timeout=2")
    assert options == RedisOptions(socket_timeout=2)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://h1:7000/1",
        "redis+cluster://h1:port",
        "redis+cluster://h1:7000,,h2:7001",
        "redis+cluster://h1:7000?db=2",
        "redis+cluster://h1:7000?sentinel_password=x",
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:26379/",
        "redis+sentinel://s1:26379/mymaster/0/extra",
        "redis+sentinel://s1:26379/mymaster/zero",
        "redis+sentinel://s1:26379/mymaster/0?db=1",
        "redis+sentinel://s1:26379/mymaster?timeout=1",
        "redis+clusters://h1:7000",
    ],
)
def test_a_malformed_cluster_or_sentinel_url_is_a_value_error_naming_it(url: str) -> None:
    with pytest.raises(ValueError) as info:
        distqueue.Queue(url=url)
    assert url in str(info.value)


def test_a_cluster_that_cannot_be_reached_is_a_connection_error_within_the_bound() -> None:
    from servers import free_port

    url = f"redis+cluster://127.0.0.1:{free_port()}?retry_window=0.5&connect_timeout=0.5"
    started = time.monotonic()
    with pytest.raises(distqueue.BackendConnectionError):
        distqueue.Queue(url=url, name="nowhere")
    assert time.monotonic() - started < 0.5 + 0.5 + 1.0


# -- scripts and slots ---------------------------------------------------------------------------


def test_every_script_declares_its_flags_with_a_shebang() -> None:
    lua = resources.files("distqueue.backends").joinpath("lua")
    scripts = [path for path in lua.iterdir() if path.name.endswith(".lua")]
    assert len(scripts) > 10
    for path in scripts:
        if path.name == "lib.lua":
            continue  # spliced into the others, after their shebang
        first = path.read_text("utf-8").partition("\n")[0]
        assert first.startswith("#!lua"), f"{path.name} starts with {first!r}"


def test_the_cluster_refuses_a_shebang_script_touching_a_key_outside_its_slot(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    # What the shebang buys on a cluster: a script that reaches for an undeclared key of
    # another slot fails, even when that slot lives on the same node.
    node = redis_cluster.master_of_key("{q}items")
    with node.client() as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", "{q}items")
        other = next(
            f"k{i}"
            for i in range(10_000)
            if client.execute_command("CLUSTER", "KEYSLOT", f"k{i}") != slot
            and redis_cluster.master_of_key(f"k{i}") is node
        )
        body = "return redis.call('SET', ARGV[1], 1)"
        assert client.eval(body, 1, "{q}items", other) == "OK"  # without a shebang: allowed
        with pytest.raises(redis.exceptions.ResponseError, match="same slot"):
            client.eval("#!lua\n" + body, 1, "{q}items", other)


def test_queues_spread_over_the_masters_each_queue_on_one_slot(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    names = [f"spread-{i}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    queues: list[distqueue.PriorityQueue[Any]] = [
        distqueue.PriorityQueue(url=cluster_url, name=name) for name in names
    ]
    try:
        owners = set()
        for q, name in zip(queues, names, strict=True):
            q.put_many([(2, "b"), (1, "a")])
            key = f"dq:{{{name}}}:items"
            owners.add(redis_cluster.master_of_key(key).port)
            assert q.get() == (1, "a")
            assert q.qsize() == 1
        assert len(owners) >= 2, f"12 queues all on one master: {owners}"
    finally:
        for q in queues:
            q.delete()
            q.close()


def test_a_master_without_the_functions_is_given_them_by_the_first_call_there(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    from distqueue.backends.scripts import function_library

    library = function_library()[0].partition("\n")[0].partition("name=")[2]
    name = f"functions-{uuid.uuid4().hex[:6]}"
    master = redis_cluster.master_of_key(f"dq:{{{name}}}:items")

    def forget_functions() -> None:  # as restarts without persistence would
        for node in redis_cluster.masters():
            with node.client() as client:
                client.function_flush()

    def loaded() -> list[str]:
        with master.client() as client:
            return [entry[1] for entry in client.function_list(library)]

    async def put_async(item: int) -> None:
        aq: distqueue.aio.Queue[Any] = distqueue.aio.Queue(url=cluster_url, name=name)
        try:
            await aq.put(item)
        finally:
            await aq.aclose()

    q: distqueue.Queue[Any] = distqueue.Queue(url=cluster_url, name=name)
    try:
        q.put(1)
        forget_functions()
        q.put(2)
        assert loaded() == [library]
        forget_functions()
        asyncio.run(put_async(3))
        assert loaded() == [library]
        assert q.get_many(5) == [1, 2, 3]
    finally:
        q.delete()
        q.close()


def test_the_executor_and_a_worker_run_tasks_on_a_cluster(cluster_url: str) -> None:
    import taskfns

    from distqueue.results import ResultStore

    name = f"tasks-{uuid.uuid4().hex}"
    queue: distqueue.Queue[Any] = distqueue.Queue(url=cluster_url, name=name, visibility_timeout=10)
    results = ResultStore("memory://")
    worker = Worker(queue, results=results, concurrency=2, poll=0.1, allow=["taskfns"])
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        with distqueue.Executor(url=cluster_url, queue=name, results="memory://") as executor:
            assert list(executor.map(taskfns.add, range(20), range(20))) == list(range(0, 40, 2))
    finally:
        worker.stop()
        thread.join(10)
        queue.delete()
        queue.close()
        results.close()


# -- a slot that moves ---------------------------------------------------------------------------


def _slot_and_other_master(cluster: Cluster, name: str) -> tuple[int, Any, Any]:
    key = f"dq:{{{name}}}:items"
    source = cluster.master_of_key(key)
    with source.client() as client:
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
    target = next(node for node in cluster.masters() if node is not source)
    return slot, source, target


def test_a_blocked_get_follows_its_slot_to_another_master(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    name = f"moving-{uuid.uuid4().hex}"
    consumer: distqueue.Queue[Any] = distqueue.Queue(url=cluster_url, name=name)
    producer: distqueue.Queue[Any] = distqueue.Queue(url=cluster_url, name=name)
    try:
        producer.put("before")
        assert consumer.get(timeout=5) == "before"
        thread, result = run_in_thread(lambda: consumer.get(timeout=30))
        wait_until_blocked(thread, consumer)
        slot, source, target = _slot_and_other_master(redis_cluster, name)
        redis_cluster.begin_migration(slot, target)
        redis_cluster.finish_migration(slot, source, target)
        assert redis_cluster.master_of_slot(slot) is target
        producer.put("after the move")
        thread.join(15)
        assert not thread.is_alive(), "the blocked get did not wake after its slot moved"
        assert result == ["after the move"]
        assert consumer.qsize() == 0
    finally:
        producer.delete()
        consumer.close()
        producer.close()


def test_calls_during_a_slot_migration_wait_for_it_and_lose_nothing(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    # Half-way through a migration some of a queue's keys are on each node: the scripts get
    # TRYAGAIN (or ASK) until the migration ends, within the retry window, and run once.
    name = f"migrating-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=cluster_url + "?retry_window=10", name=name, visibility_timeout=30
    )
    try:
        q.put_many(list(range(100)))
        message = q.get_message()
        slot, source, target = _slot_and_other_master(redis_cluster, name)
        redis_cluster.begin_migration(slot, target)
        redis_cluster.move_keys(slot, source, target, limit=2)

        def calls() -> tuple[None, bool, list[Any]]:
            q.put("late")
            return None, message.ack(), q.get_many(200, timeout=5)

        thread, result = run_in_thread(calls)
        assert_still_running(thread, 0.5)  # refused for as long as the slot is half-moved
        redis_cluster.finish_migration(slot, source, target)
        thread.join(15)
        assert not thread.is_alive(), "calls did not finish after the migration"
        _, acked, rest = result[0]
        assert acked is True
        assert sorted(rest, key=str) == sorted([*range(1, 100), "late"], key=str)
        assert q.unfinished_tasks == 100
        assert q.in_flight() == 100  # leased by get_many
    finally:
        q.delete()
        q.close()


# -- a master that dies --------------------------------------------------------------------------


def test_a_blocked_get_carries_on_after_its_master_fails_over_and_it_rejoins(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    name = f"failing-{uuid.uuid4().hex}"
    url = cluster_url + "?retry_window=15"
    consumer: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name, visibility_timeout=30)
    producer: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name)
    try:
        producer.put("warm-up")
        consumer.get()
        consumer.task_done()
        thread, result = run_in_thread(lambda: consumer.get(timeout=40))
        wait_until_blocked(thread, consumer)
        master = redis_cluster.master_of_key(f"dq:{{{name}}}:items")
        redis_cluster.kill_master_and_wait_for_promotion(master)
        producer.put("after the fail-over")
        thread.join(20)
        assert not thread.is_alive(), "the blocked get did not wake after the fail-over"
        assert result == ["after the fail-over"]
        consumer.task_done()
        assert consumer.join(timeout=5)
        # the dead master comes back as a replica of the new one, and nothing changes for us
        redis_cluster.wait_healthy()
        assert master.role() == "slave"
        producer.put_many(["once", "more"])
        assert consumer.get_many(5, timeout=5) == ["once", "more"]
    finally:
        redis_cluster.wait_healthy()
        producer.delete()
        consumer.close()
        producer.close()


@pytest.mark.slow
def test_nothing_acknowledged_is_lost_when_a_master_dies_mid_run(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    name = f"failover-{uuid.uuid4().hex}"
    master = redis_cluster.master_of_key(f"dq:{{{name}}}:items")
    try:
        run = run_through(
            cluster_url + "?retry_window=15",
            name,
            lambda: redis_cluster.kill_master_and_wait_for_promotion(master),
        )
    finally:
        redis_cluster.wait_healthy()
    print("cluster fail-over:", run.summary())
    assert_nothing_lost(run)
