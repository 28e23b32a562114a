"""Cache and ResultStore on a Redis Cluster and through Redis Sentinel: keys over several slots,
results and their wake-up tokens in one slot, the Executor's results, and a master killed
mid-run.

The whole cache suite (test_cache.py) runs on both too (``cache_url``); this module holds what
only they have. The servers are the session's (tests/cluster.py); a test that kills a master
leaves them healthy again.

What a fail-over may lose: Redis replicates asynchronously, so a write the old master
acknowledged in the moments before it died may never have reached the replica that takes
over. The fail-over tests therefore check what Redis does promise, and what distqueue adds:

* a write acknowledged before ``WAIT`` confirmed that the replica had everything (a raw write
  made after it, then ``WAIT 1``: one replication stream, in order) is there afterwards;
* a write acknowledged after the promotion was seen is there afterwards;
* no value is ever wrong, only there or not;
* a counter is never ahead of the increments that returned or whose outcome was unknown
  (never counted twice), nor behind those that were surely kept;
* waiters blocked on the dead master wake on the new one when their results come, and no
  call fails with anything but the documented outcomes (``False``, ``None``,
  ``OutcomeUnknownError``).
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.crc
from cluster import Cluster, Node, SentinelGroup
from threads import run_in_thread

import distqueue
from distqueue.cache import Cache, OutcomeUnknownError, ResultStore
from distqueue.kv.keys import Keyspace
from distqueue.kv.redis import request_key

pytestmark = pytest.mark.redis

GUARD = 60.0


# -- the key layout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_id",
    ["t", "a:b", "with space", "{braced}", "}{", "x}", "é", "", "x" * 300, "a{b}c"],
    ids=repr,
)
def test_a_result_and_its_wake_up_token_share_a_slot(task_id: str) -> None:
    result, wake = Keyspace("ns").task_keys(task_id)
    assert result != wake
    assert redis.crc.key_slot(result) == redis.crc.key_slot(wake), (result, wake)
    assert len(result) <= 250 and len(wake) <= 250
    assert b" " not in result


def test_task_keys_of_different_ids_differ() -> None:
    keys = Keyspace("ns")
    ids = ["t", "{t}", "t}", "{t", "x" * 300, "x" * 301, "", " "]
    results = {keys.task_keys(task_id)[0] for task_id in ids}
    assert len(results) == len(ids)


# -- a cluster: keys spread over its masters -----------------------------------------------------


def keys_per_master(cluster: Cluster, pattern: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for node in cluster.masters():
        with node.client() as client:
            counts[node.port] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    return counts


def test_cache_keys_spread_over_every_master_and_calls_on_many_keys_reach_them_all(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    values = {f"key-{i}": i for i in range(300)}
    with Cache(cluster_url, namespace=namespace) as cache:
        assert cache.set_many(values) == []
        counts = keys_per_master(redis_cluster, f"{namespace}:*")
        assert len(counts) == 3 and all(counts.values()), counts
        assert sum(counts.values()) == 300
        assert cache.get_many(list(values)) == values
        assert cache.get_many([*values, "absent"]) == values
        for i in range(0, 300, 3):
            assert cache.incr(f"key-{i}") == i + 1
        big = b"x" * (3 * 1024 * 1024) + bytes(range(256))
        assert cache.set("big", big)
        assert cache.get("big") == big
        for key in values:
            assert cache.delete(key)
        assert cache.get_many(list(values)) == {}
        assert cache.stats.server_errors == 0


def test_results_over_every_master_publish_and_wake_in_one_slot_each(
    redis_cluster: Cluster, cluster_url: str
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    ids = [f"task-{i}" for i in range(60)]
    with ResultStore(cluster_url, namespace=namespace, ttl=60) as store:
        for task_id in ids:
            store.mark_pending(task_id)
        waiters = [run_in_thread(functools.partial(store.wait, t, timeout=GUARD)) for t in ids[:6]]
        store.set_many([distqueue.cache.Outcome(t, {"id": t}) for t in ids])
        for thread, _ in waiters:
            thread.join(GUARD)
        assert [got[0].value for _, got in waiters] == [{"id": t} for t in ids[:6]]
        outcomes = store.fetch_many(ids)
        assert all(outcome.value == {"id": t} for t, outcome in outcomes.items())  # type: ignore[union-attr]
        counts = keys_per_master(redis_cluster, f"{namespace}:n:*")
        assert len(counts) == 3 and all(counts.values()), counts
        store.forget_many(ids)
        assert keys_per_master(redis_cluster, f"{namespace}:*") == dict.fromkeys(counts, 0)


def executor_round_trip(url: str) -> None:
    """The Executor and a worker on ``url``, with the results on the same servers."""
    import taskfns

    from distqueue.worker import Worker

    name = f"tasks-{uuid.uuid4().hex}"
    queue: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name, visibility_timeout=10)
    results = ResultStore(url)
    worker = Worker(queue, results=results, concurrency=2, poll=0.1, allow=["taskfns"])
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        with distqueue.Executor(url=url, queue=name) as executor:
            assert list(executor.map(taskfns.add, range(20), range(20))) == list(range(0, 40, 2))
    finally:
        worker.stop()
        thread.join(10)
        queue.delete()
        queue.close()
        results.close()


def test_the_executor_keeps_its_results_on_the_cluster(cluster_url: str) -> None:
    executor_round_trip(cluster_url + "?retry_window=10")


def test_the_executor_keeps_its_results_behind_the_sentinels(sentinel_url: str) -> None:
    executor_round_trip(sentinel_url + "?retry_window=10")


def test_a_cluster_url_takes_the_queue_urls_parameters(cluster_url: str) -> None:
    url = cluster_url + "?socket_timeout=2&connect_timeout=1&retry_window=5&outage_limit=30"
    with Cache(url) as cache:
        assert cache.set("k", 1) and cache.get("k") == 1
    with pytest.raises(ValueError, match="retry_window must be at most"):
        Cache(cluster_url + "?retry_window=100")
    with pytest.raises(ValueError, match="database 0 only"):
        Cache(cluster_url + "/3")


def test_a_sentinel_url_takes_its_service_database_and_sentinel_parameters(
    redis_sentinel: SentinelGroup, sentinel_url: str
) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    url = sentinel_url.rsplit("/", 1)[0] + "/5?socket_timeout=2&retry_window=5"
    with Cache(url, namespace=namespace) as cache:
        assert cache.set("k", "in db 5")
    with redis_sentinel.current_master().client(db=5) as raw:
        assert raw.get(f"{namespace}:v:k") == "sin db 5"
    with pytest.raises(ValueError, match="unknown query parameter 'sentinel_nickname'"):
        Cache(sentinel_url + "?sentinel_nickname=x")


# -- a master killed mid-run ---------------------------------------------------------------------


@dataclass
class KVRun:
    """What the writers of one run were told, with the time (``time.monotonic()``)."""

    acked: dict[int, float] = field(default_factory=dict)  # set() returned True
    refused: int = 0  # set() returned False
    incr_acked: int = 0
    incr_times: list[float] = field(default_factory=list)
    incr_unknown: int = 0  # OutcomeUnknownError
    incr_none: int = 0  # None: the server failed before the increment was sent
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    synced_at: float = 0.0
    failed_at: float = 0.0
    failed_over_at: float = 0.0

    def acked_after(self, moment: float) -> int:
        with self.lock:
            return sum(1 for at in self.acked.values() if at > moment)


def write_until(cache: Cache, run: KVRun, stop: threading.Event, start: int) -> None:
    """Set key ``k{i}`` to ``i`` (from ``start`` on) and increment ``hits``, again and again,
    recording what each call returned."""
    i = start
    while not stop.is_set():
        i += 1
        try:
            stored = cache.set(f"k{i}", i)
            now = time.monotonic()
            with run.lock:
                if stored:
                    run.acked[i] = now
                else:
                    run.refused += 1
            try:
                counted = cache.incr("hits")
            except OutcomeUnknownError:
                with run.lock:
                    run.incr_unknown += 1
            else:
                with run.lock:
                    if counted is None:
                        run.incr_none += 1
                    else:
                        run.incr_acked += 1
                        run.incr_times.append(time.monotonic())
        except Exception as exc:  # anything else is a failure of the test
            with run.lock:
                run.errors.append(repr(exc))
        time.sleep(0.002)  # pacing only: a few thousand writes in a run


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {GUARD} s"
        time.sleep(0.05)


def replicated(master: Node, key: str) -> None:
    """Write ``key`` on ``master`` and wait until its replica has it, and so everything that
    master acknowledged before."""
    with master.client() as raw:
        raw.set(key, "synced")
        assert raw.execute_command("WAIT", 1, 10_000) == 1, "the replica did not catch up"


def run_through_failover(
    url: str,
    kill: Callable[[], object],
    master: Node,
    sync_key: str,
) -> None:
    """Writers and result waiters on ``url`` while ``kill()`` kills ``master`` and returns once
    a replica took over; then the checks of the module docstring."""
    namespace = f"t-{uuid.uuid4().hex}"
    run = KVRun()
    stop = threading.Event()
    writers = [Cache(url, namespace=namespace) for _ in range(2)]
    store = ResultStore(url, namespace=namespace, ttl=600)
    task_ids = [f"task-{i}" for i in range(24)]
    threads = [
        threading.Thread(target=write_until, args=(cache, run, stop, n * 10**6))
        for n, cache in enumerate(writers)
    ]
    try:
        for task_id in task_ids:
            store.mark_pending(task_id)
        waiters = [run_in_thread(functools.partial(store.wait, t, timeout=GUARD)) for t in task_ids]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(run.acked) >= 300, "writes before the kill")
        run.synced_at = time.monotonic()
        replicated(master, sync_key)
        run.failed_at = time.monotonic()
        kill()
        run.failed_over_at = time.monotonic()
        wait_for(lambda: run.acked_after(run.failed_over_at) >= 300, "writes after promotion")
        for task_id in task_ids:  # the waiters were blocked on the old master too
            store.set_result(task_id, task_id.upper())
        for thread, _ in waiters:
            thread.join(GUARD)
        stop.set()
        for thread in threads:
            thread.join(GUARD)
        woken = [got[0] for _, got in waiters]
        assert [getattr(outcome, "value", outcome) for outcome in woken] == [
            task_id.upper() for task_id in task_ids
        ]

        assert not run.errors, run.errors[:5]
        with Cache(url, namespace=namespace) as reader:
            stored = reader.get_many([f"k{i}" for i in run.acked])
            hits = reader.get("hits")
        wrong = {key: value for key, value in stored.items() if key != f"k{value}"}
        assert not wrong, f"values under the wrong keys: {list(wrong.items())[:5]}"
        sure = [i for i, at in run.acked.items() if at < run.synced_at or at > run.failed_over_at]
        lost = [i for i in sure if f"k{i}" not in stored]
        assert not lost, f"{len(lost)} writes lost that Redis had kept: {lost[:20]}"
        maybe_lost = len(run.acked) - len(stored)
        assert isinstance(hits, int)
        assert hits <= run.incr_acked + run.incr_unknown, "an increment counted twice"
        kept = [at for at in run.incr_times if at < run.synced_at or at > run.failed_over_at]
        assert hits >= len(kept), "increments lost that Redis had kept"
        print(
            f"{len(run.acked)} writes acknowledged, {run.refused} refused during the fail-over, "
            f"{maybe_lost} acknowledged in the moments before the kill and lost with the "
            f"master; increments: {run.incr_acked} acknowledged, {run.incr_unknown} unknown, "
            f"{run.incr_none} not sent, counter at {hits}; fail-over took "
            f"{run.failed_over_at - run.failed_at:.2f} s"
        )
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(GUARD)
        for cache in writers:
            cache.close()
        store.close()


@pytest.fixture
def healthy_cluster(redis_cluster: Cluster, cluster_url: str) -> Iterator[str]:
    yield cluster_url
    redis_cluster.wait_healthy()


@pytest.mark.slow
def test_cache_and_results_through_a_cluster_master_killed_mid_run(
    redis_cluster: Cluster, healthy_cluster: str
) -> None:
    sync_key = f"sync-{uuid.uuid4().hex}"
    master = redis_cluster.master_of_key(sync_key)
    run_through_failover(
        healthy_cluster + "?retry_window=15",
        lambda: redis_cluster.kill_master_and_wait_for_promotion(master),
        master,
        sync_key,
    )


@pytest.fixture
def healthy_sentinel(redis_sentinel: SentinelGroup, sentinel_url: str) -> Iterator[str]:
    old = redis_sentinel.current_master()
    yield sentinel_url
    if not old.running:
        redis_sentinel.restart_old_master(old)
    redis_sentinel.wait_healthy()


@pytest.mark.slow
def test_cache_and_results_through_a_sentinel_master_killed_mid_run(
    redis_sentinel: SentinelGroup, healthy_sentinel: str
) -> None:
    master = redis_sentinel.current_master()
    run_through_failover(
        healthy_sentinel + "?retry_window=15",
        redis_sentinel.kill_master_and_wait_for_promotion,
        master,
        f"sync-{uuid.uuid4().hex}",
    )


@pytest.mark.parametrize(
    "key",
    [b"ns:v:k", b"ns:v:{tag}rest", b"ns:v:}{", b"ns:v:a{}b{c}", b"ns:v:a}b", b"ns:v:{}", b"{a{b}"],
    ids=repr,
)
def test_a_request_keeps_its_reply_in_the_slot_of_its_key(key: bytes) -> None:
    reply = request_key(key, "0123abcd").encode("ascii")
    assert redis.crc.key_slot(reply) == redis.crc.key_slot(key), reply
    assert b"0123abcd" in reply


@pytest.mark.parametrize("key", ["}{", "a{}b{c}", "a}b", "{tag}x", "{}"], ids=repr)
def test_counters_cas_and_append_work_on_keys_with_braces_on_a_cluster(
    cluster_url: str, key: str
) -> None:
    with Cache(cluster_url, namespace=f"t-{uuid.uuid4().hex}") as cache:
        assert cache.incr(key, 2) == 2
        assert cache.decr(key) == 1
        _, token = cache.gets(key)
        assert token is not None
        assert cache.cas(key, b"bytes", token)
        assert cache.append(key, b"-more") and cache.prepend(key, b"some ")
        assert cache.get(key) == b"some bytes-more"
        assert cache.stats.server_errors == 0
