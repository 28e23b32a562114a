"""At-least-once delivery under failures: workers killed with SIGKILL, redis-server restarted.

Workers are ``distqueue worker`` processes running :func:`taskfns.record_start_end`, which
records ``(pid, item)`` when the work on an item starts and when it ends, in Redis lists on the
session's redis-server (never the one a test restarts). From those two lists and the set of
killed pids, a test tells apart an item processed twice because its worker died (allowed: the
lease ran out and the item was delivered again) from one processed twice for no reason (a bug),
and an item processed at least once from one lost.

Durations are never asserted; every wait has a generous limit so that a bug fails a test
instead of hanging it. The test that kills at random prints its seed (pytest shows it with a
failure), and names it in the messages of its main checks.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import taskfns
from faults import FaultyProxy
from processes import GUARD, Records, Workers, fresh_name, settled, wait_until
from servers import RedisServer, require_binary

import distqueue

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(240)]

RECORDING = ("--max-deliveries", "100", "taskfns:record_start_end")
"""Options of the recording workers: no item of these tests should ever become a dead letter."""

ASYNC_RECORDING = (
    "--asyncio",
    "--concurrency",
    "8",
    "--max-deliveries",
    "100",
    "taskfns:arecord_start_end",
)
"""The same on an event loop, eight coroutines at once."""


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with append-only persistence (fsync at every write),
    which the test kills with SIGKILL and starts again on the same port."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(require_binary("redis-server"), directory, appendonly=True)
    yield server
    server.kill()


def crash_and_restart(server: RedisServer, down_for: float = 0.0) -> None:
    """``kill -9`` the server, leave it down ``down_for`` seconds, start it on the same port."""
    server.kill()
    time.sleep(down_for)
    server.start()


class Producer(threading.Thread):
    """Puts ``batches`` batches of ``size`` consecutive ints, pausing ``pause`` s after each.

    A batch whose put fails with ``BackendConnectionError`` is put again until it succeeds (it
    may then be there twice). ``put`` lists the items whose put returned.
    """

    def __init__(self, url: str, name: str, batches: int, size: int, pause: float) -> None:
        super().__init__(name="producer", daemon=True)
        self.queue: distqueue.Queue[int] = distqueue.Queue(url=url, name=name)
        self.batches, self.size, self.pause = batches, size, pause
        self.put: list[int] = []
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, self.batches * self.size, self.size):
                batch = list(range(start, start + self.size))
                while True:
                    try:
                        self.queue.put_many(batch)
                        break
                    except distqueue.BackendConnectionError:
                        self.retries += 1
                        time.sleep(0.05)
                self.put.extend(batch)
                time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc
        finally:
            self.queue.close()

    def finish(self) -> list[int]:
        """The items put; fails if the producer raised or did not finish in time."""
        self.join(GUARD)
        assert not self.is_alive(), f"the producer is still putting after {GUARD} s"
        assert self.error is None, f"the producer failed: {self.error!r}"
        return self.put


def starts_by_item(pairs: list[tuple[int, Any]]) -> dict[Any, list[int]]:
    """The pids that recorded each item, in the order they recorded it."""
    found: dict[Any, list[int]] = defaultdict(list)
    for pid, item in pairs:
        found[item].append(pid)
    return found


def unprocessed(records: Records, items: list[int]) -> list[int]:
    """The ints of ``items`` that no worker finished processing."""
    done = {item for _, item in records.ends() if isinstance(item, int)}
    return sorted(set(items) - done)


def acknowledged(records: Records, url: str, name: str) -> set[int]:
    """The items processed and acknowledged: recorded as finished, and no longer held by the
    queue's server, neither waiting nor leased (per the key layout documented in
    :mod:`distqueue.backends.redis`: waiting payloads, or references to leased ones, in
    ``items``; the payloads of leased items in ``payloads``)."""
    finished = {item for _, item in records.ends()}
    with redis.Redis.from_url(url) as client:
        pipe = client.pipeline(transaction=True)
        pipe.lrange(f"dq:{{{name}}}:items", 0, -1)
        pipe.hvals(f"dq:{{{name}}}:payloads")
        waiting, leased = pipe.execute()
    held = {json.loads(raw) for raw in [*waiting, *leased] if not raw.startswith(b"\0dq:ref:")}
    return finished - held


def assert_workers_alive(workers: Workers, processes: list[Any]) -> None:
    exited = {p.pid: p.returncode for p in processes if p.poll() is not None}
    assert not exited, (
        f"workers exited (pid: status) {exited}; log of the first:\n"
        + workers.log(next(p for p in processes if p.pid in exited))[-3000:]
    )


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_workers_killed_at_random_lose_no_item_and_repeat_only_what_they_held(
    workers: Workers, records: Records, redis_url: str, mode: str
) -> None:
    seed = random.randrange(2**32)
    print(f"seed of the random kills: {seed}")
    rng = random.Random(seed)
    name = fresh_name("chaos")
    recording = RECORDING if mode == "threads" else ASYNC_RECORDING
    options = ("--visibility-timeout", "1", *recording)
    # Coroutines run eight at once: a longer pause keeps the workers busy (their capacity,
    # 4 x 8 / 0.2 s, below the producer's rate), so that a kill finds items in hand.
    env = {"RECORD_PAUSE": "0.01" if mode == "threads" else "0.2"}
    running = [workers.start(redis_url, name, *options, env=env) for _ in range(4)]
    killed: set[int] = set()
    producer = Producer(redis_url, name, batches=100, size=25, pause=0.1)  # 2,500 items
    producer.start()
    with distqueue.Queue(url=redis_url, name=name) as q:
        while producer.is_alive():
            time.sleep(rng.uniform(0.2, 1.0))
            victim = rng.choice(running)
            victim.kill()
            victim.wait(GUARD)
            killed.add(victim.pid)
            running.remove(victim)
            running.append(workers.start(redis_url, name, *options, env=env))
        items = producer.finish()
        assert q.join(timeout=GUARD), f"not drained: {settled(q)} (seed {seed})"
        assert settled(q) == (0, 0, 0)
        assert q.dead_letters() == []
        q.delete()

    starts, ends = records.starts(), records.ends()
    missing = sorted(set(items) - {item for _, item in ends})
    assert not missing, f"{len(missing)} items never processed: {missing[:20]} (seed {seed})"
    assert {item for _, item in starts} == set(items)
    again = {item: pids for item, pids in starts_by_item(starts).items() if len(pids) > 1}
    assert again, (
        f"{len(killed)} kills and no item delivered twice: no kill hit a worker holding an "
        f"item, nothing was tested (seed {seed})"
    )
    for label, pairs in (("started", starts), ("finished", ends)):
        unexplained = {
            item: pids
            for item, pids in starts_by_item(pairs).items()
            if any(pid not in killed for pid in pids[:-1])
        }
        assert not unexplained, (
            f"items {label} again after a worker that was not killed had {label} them "
            f"(item: pids in order) {unexplained}; killed: {sorted(killed)} (seed {seed})"
        )
    for worker in running:
        assert workers.stop(worker) == 0


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_a_redis_restart_loses_no_item_and_workers_reconnect_by_themselves(
    workers: Workers, records: Records, restartable_redis: RedisServer, mode: str
) -> None:
    url = restartable_redis.url
    name = fresh_name("restart")
    recording = RECORDING if mode == "threads" else ASYNC_RECORDING
    options = ("--visibility-timeout", "2", *recording)
    env = {"RECORD_PAUSE": "0.005"}
    running = [workers.start(url, name, *options, env=env) for _ in range(3)]
    producer = Producer(url, name, batches=100, size=20, pause=0.05)  # 2,000 items
    producer.start()
    crashes: list[tuple[set[int], int]] = []  # (acknowledged then, starts recorded then)
    for share in (4, 2):  # restart when a quarter and when half of the items were processed

        def processed(share: int = share) -> bool:
            return len(records.ends()) >= 2000 // share

        wait_until(processed, f"1/{share} processed")
        crashes.append((acknowledged(records, url, name), len(records.starts())))
        crash_and_restart(restartable_redis)
    items = producer.finish()

    wait_until(
        lambda: not unprocessed(records, items),
        "every item put to be processed",
        show=lambda: f"{len(unprocessed(records, items))} not processed",
    )
    starts = records.starts()
    for done, recorded in crashes:
        again = sorted(done & {item for _, item in starts[recorded:]})
        assert not again, f"acknowledged before a crash, delivered again after it: {again[:20]}"
    assert_workers_alive(workers, running)
    with distqueue.Queue(url=url, name=name) as q:
        assert q.join(timeout=GUARD), f"not drained: {settled(q)}"
        assert settled(q) == (0, 0, 0)
        assert q.dead_letters() == []
    for worker in running:
        assert workers.stop(worker) == 0


class Submitter(threading.Thread):
    """Submits ``add(i, i)`` for ``count`` values of ``i``, submitting again when ``submit``
    fails with ``BackendConnectionError``."""

    def __init__(self, executor: distqueue.Executor, count: int) -> None:
        super().__init__(name="submitter", daemon=True)
        self.executor, self.count = executor, count
        self.futures: dict[int, concurrent.futures.Future[int]] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(self.count):
                while True:
                    try:
                        self.futures[i] = self.executor.submit(taskfns.add, i, i)
                        break
                    except distqueue.BackendConnectionError:
                        time.sleep(0.05)
        except BaseException as exc:
            self.error = exc

    def done(self) -> int:
        return sum(future.done() for future in list(self.futures.values()))

    def outcomes(self, timeout: float) -> dict[int, Any]:
        """Each submitted call's result, or the exception its future raised, or "never
        completed" for a future still pending ``timeout`` s after the last submit."""
        self.join(GUARD)
        assert not self.is_alive(), f"still submitting after {GUARD} s"
        assert self.error is None, f"submit failed: {self.error!r}"
        concurrent.futures.wait(self.futures.values(), timeout)
        found: dict[int, Any] = {}
        for i, future in self.futures.items():
            if not future.done():
                found[i] = "never completed"
            elif future.exception() is not None:
                found[i] = future.exception()
            else:
                found[i] = future.result()
        return found


def test_executor_calls_complete_across_redis_restarts(
    workers: Workers, restartable_redis: RedisServer
) -> None:
    url = restartable_redis.url
    name = fresh_name("tasks")
    running = [workers.start(url, name) for _ in range(2)]
    executor = distqueue.Executor(url=url, queue=name)
    restarts = 4
    submitter = Submitter(executor, count=300 * restarts)
    submitter.start()
    for restart in range(1, restarts + 1):

        def done(restart: int = restart) -> bool:
            return submitter.done() >= 200 * restart

        wait_until(
            done,
            f"{200 * restart} calls done",
            show=lambda: f"{submitter.done()} done of {len(submitter.futures)} submitted",
        )
        crash_and_restart(restartable_redis)
    outcomes = submitter.outcomes(timeout=GUARD)
    shut_down(executor, submitter.futures.values())

    wrong = {i: got for i, got in outcomes.items() if got != 2 * i}
    assert not wrong, (
        f"{len(wrong)} of {len(outcomes)} calls failed, e.g. {list(wrong.items())[:3]}"
    )
    assert_workers_alive(workers, running)
    for worker in running:
        assert workers.stop(worker) == 0


def shut_down(
    executor: distqueue.Executor, futures: Iterable[concurrent.futures.Future[Any]]
) -> None:
    """Shut ``executor`` down: waiting for it when every future is done, else cancelling the
    rest (a test that failed must not hang here)."""
    if all(future.done() for future in futures):
        executor.shutdown(wait=True)
    else:
        executor.shutdown(wait=False, cancel_futures=True)


def test_an_executor_call_completes_when_its_reply_is_lost_in_transit(
    workers: Workers, redis_url: str
) -> None:
    name = fresh_name("tasks")
    worker = workers.start(redis_url, name)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    # Only the Executor's traffic goes through the proxy (the worker and the results store
    # connect directly), and of what the server sends it, only a reply taken off the reply
    # queue holds a task id as a JSON string: 32 hex digits in double quotes.
    proxy = FaultyProxy(port)
    executor = distqueue.Executor(
        url=f"redis://127.0.0.1:{proxy.port}/0", queue=name, results=redis_url
    )
    futures: list[concurrent.futures.Future[int]] = []
    try:
        proxy.drop_reply(re.compile(rb'"[0-9a-f]{32}"'))
        futures.append(executor.submit(taskfns.add, 1, 2))
        wait_until(lambda: proxy.drops == 1, "the connection carrying the reply to be cut")
        futures.append(executor.submit(taskfns.add, 3, 4))
        assert futures[1].result(timeout=GUARD) == 7  # the Executor reconnected by itself
        # the retry of the lost call returns the same reply: nothing waits for a lease to end
        concurrent.futures.wait(futures, timeout=GUARD)
        assert futures[0].done(), "the call whose reply was lost in transit never completed"
        assert futures[0].result() == 3
    finally:
        shut_down(executor, futures)
        proxy.close()
    assert workers.stop(worker) == 0


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_workers_outlive_an_outage_longer_than_the_client_retries(
    workers: Workers, records: Records, restartable_redis: RedisServer, mode: str
) -> None:
    url = restartable_redis.url
    name = fresh_name("outage")
    recording = RECORDING if mode == "threads" else (*ASYNC_RECORDING, "--concurrency", "1")
    options = ("--visibility-timeout", "2", *recording)
    running = [workers.start(url, name, *options) for _ in range(3)]
    for worker in running:
        workers.wait_for_log(worker, name)  # started: it names its queue

    def holders() -> set[int]:
        return {pid for pid, item in records.starts() if isinstance(item, dict)}

    with distqueue.Queue(url=url, name=name) as q:
        # one slow item at a time, so that each worker holds one (a worker that is busy takes
        # no more) when the server goes away
        for n in range(3):
            q.put({"sleep": 3, "n": n})

            def in_hand(n: int = n) -> bool:
                return len(holders()) == n + 1

            wait_until(in_hand, f"{n + 1} slow items in hand")
        q.put_many(range(30))
    crash_and_restart(restartable_redis, down_for=10.0)  # longer than the clients' retries

    wait_until(
        lambda: (
            not unprocessed(records, [*range(30)]) or any(p.poll() is not None for p in running)
        ),
        "every item processed (or a worker gone)",
        show=lambda: f"not processed: {unprocessed(records, [*range(30)])}",
    )
    assert_workers_alive(workers, running)
    for worker in running:
        assert workers.stop(worker) == 0
