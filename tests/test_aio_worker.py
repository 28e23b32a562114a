"""``async def`` tasks: on the event loop of :class:`AsyncWorker`, and on the thread worker.

An Executor and a worker thread of this process share a queue in memory and on a real
redis-server. Concurrency is shown without any clock: :func:`taskfns.meet` returns only once
all of its calls are running at the same time, so a worker that ran them one after another
would fail them (each gives up after 30 s with an error naming how many came).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import taskfns
from processes import GUARD, wait_until

import distqueue
from distqueue.aio.worker import AsyncWorker
from distqueue.registry import open_registry
from distqueue.results import ResultStore
from distqueue.serializers import get_serializer
from distqueue.tasks import TaskMessage
from distqueue.worker import Worker

KEY = b"a key shared by the Executor and its workers"


@pytest.fixture(params=["memory", "redis"])
def queue_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


class Serving:
    """A task queue with a worker (thread or event loop) in a thread of this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"tasks-{uuid.uuid4().hex}"
        self.queue: distqueue.Queue[Any] = distqueue.Queue(
            url=url, name=self.name, visibility_timeout=10
        )
        self.results = ResultStore(url)
        self.executors: list[distqueue.Executor] = []
        self.worker: Worker | None = None
        self.thread: threading.Thread | None = None
        self.status: list[int] = []

    def start(self, kind: type[Worker] = AsyncWorker, **options: Any) -> Worker:
        options.setdefault("allow", ["taskfns"])
        worker = self.worker = kind(self.queue, results=self.results, poll=0.1, **options)

        def run() -> None:
            self.status.append(worker.run(handle_signals=False))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return worker

    def stop(self) -> None:
        assert self.worker is not None and self.thread is not None
        self.worker.stop()
        self.thread.join(GUARD)
        assert not self.thread.is_alive(), "the worker did not stop"

    def executor(self, **options: Any) -> distqueue.Executor:
        executor = distqueue.Executor(url=self.url, queue=self.name, **options)
        self.executors.append(executor)
        return executor

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=True, cancel_futures=True)
        if self.thread is not None and self.thread.is_alive():
            self.stop()
        self.queue.delete()
        self.queue.close()
        self.results.close()


@pytest.fixture
def serving(queue_url: str) -> Iterator[Serving]:
    serving = Serving(queue_url)
    yield serving
    serving.close()


WORKERS = pytest.mark.parametrize("kind", [AsyncWorker, Worker], ids=["event-loop", "threads"])


@WORKERS
def test_async_and_plain_tasks_return_their_values(serving: Serving, kind: type[Worker]) -> None:
    serving.start(kind, concurrency=4)
    executor = serving.executor()
    assert executor.submit(taskfns.aadd, 2, 3).result(timeout=GUARD) == 5
    assert executor.submit(taskfns.add, 2, 3).result(timeout=GUARD) == 5
    futures = [executor.submit(taskfns.aadd, i, i) for i in range(50)]
    assert [f.result(timeout=GUARD) for f in futures] == [2 * i for i in range(50)]
    with pytest.raises(ValueError, match="bad input"):
        executor.submit(taskfns.fail, "bad input").result(timeout=GUARD)


@pytest.mark.parametrize(
    ("kind", "concurrency"), [(AsyncWorker, 25), (Worker, 3)], ids=["event-loop", "threads"]
)
def test_concurrency_means_that_many_tasks_run_at_once(
    serving: Serving, kind: type[Worker], concurrency: int
) -> None:
    serving.start(kind, concurrency=concurrency, prefetch=1)  # a thread leases one at a time
    executor = serving.executor()
    name = uuid.uuid4().hex
    futures = [executor.submit(taskfns.meet, name, concurrency) for _ in range(concurrency)]
    assert [f.result(timeout=GUARD) for f in futures] == [concurrency] * concurrency


def test_the_event_loop_worker_never_runs_more_than_its_concurrency(serving: Serving) -> None:
    serving.start(AsyncWorker, concurrency=4)
    executor = serving.executor()
    name = uuid.uuid4().hex
    # five that can meet only if five run at once: four run, wait for a fifth, and time out
    futures = [executor.submit(taskfns.meet, name, 5, 1.0) for _ in range(5)]
    first = futures[0].exception(timeout=GUARD)
    assert isinstance(first, RuntimeError), first
    assert "of 5 calls ran at once" in str(first)
    assert futures[-1].result(timeout=GUARD) == 5  # the fifth ran once a slot was free


@WORKERS
@pytest.mark.parametrize(
    "exc_kind",
    ["SystemExit", "KeyboardInterrupt", "CancelledError", "GeneratorExit", "CustomBaseException"],
)
def test_a_base_exception_from_a_coroutine_fails_its_task_alone(
    serving: Serving, kind: type[Worker], exc_kind: str
) -> None:
    executor = serving.executor()
    futures: list[Future[Any]] = [
        executor.submit(taskfns.araise_base, exc_kind),
        executor.submit(taskfns.aadd, 1, 2),
        executor.submit(taskfns.araise_base, exc_kind),
        executor.submit(taskfns.add, 3, 4),
    ]
    wait_until(lambda: serving.queue.qsize() == 4, "the four tasks queued")
    serving.start(kind, prefetch=4)
    for future in futures[0::2]:
        with pytest.raises(distqueue.TaskFailed) as info:
            future.result(timeout=GUARD)
        assert info.value.exc_type.rpartition(".")[2] == exc_kind
    assert [future.result(timeout=GUARD) for future in futures[1::2]] == [3, 7]
    assert serving.queue.dead_letters() == []
    assert serving.thread is not None and serving.thread.is_alive()
    assert executor.submit(taskfns.aadd, 5, 5).result(timeout=GUARD) == 10
    serving.stop()
    assert serving.status == [0]


@WORKERS
def test_an_async_task_not_allowed_is_refused_and_never_runs(
    serving: Serving, kind: type[Worker]
) -> None:
    serving.start(kind, allow=["taskfns:add"])
    executor = serving.executor()
    name = uuid.uuid4().hex
    refused = executor.submit(taskfns.meet, name, 1)
    with pytest.raises(distqueue.TaskFailed) as info:
        refused.result(timeout=GUARD)
    assert info.value.exc_type == "distqueue.tasks.TaskRefused"
    assert name not in taskfns._gatherings, "a refused task ran"
    letters = serving.queue.dead_letters()
    assert len(letters) == 1
    assert "is not allowed on this worker" in (letters[0].error or "")
    assert executor.submit(taskfns.add, 1, 1).result(timeout=GUARD) == 2


def test_an_event_loop_worker_with_a_key_runs_only_signed_tasks(serving: Serving) -> None:
    serving.start(AsyncWorker, signing_key=KEY)
    signed = serving.executor(signing_key=KEY)
    assert signed.submit(taskfns.aadd, 1, 2).result(timeout=GUARD) == 3
    unsigned = TaskMessage.build(
        uuid.uuid4().hex,
        "taskfns:aadd",
        (1, 2),
        {},
        f"nobody-{uuid.uuid4().hex}",
        serializer=get_serializer("json"),
        ttl=60.0,
        key=None,
    )
    serving.queue.put(unsigned.encode())
    letters = wait_until(
        lambda: got if (got := serving.queue.dead_letters()) else [], "a dead letter"
    )
    assert "unsigned" in (letters[0].error or ""), letters[0].error


def test_a_stop_lets_running_coroutines_finish_and_takes_no_new_work(serving: Serving) -> None:
    worker = serving.start(AsyncWorker, concurrency=3)
    executor = serving.executor()
    names = [uuid.uuid4().hex, uuid.uuid4().hex]
    running = [executor.submit(taskfns.gate, name) for name in names]
    wait_until(lambda: all(name in taskfns._gates for name in names), "both tasks running")
    worker.stop()
    later = executor.submit(taskfns.add, 1, 1)  # leased and given back, or never leased
    wait_until(lambda: serving.queue.qsize() == 1, "the later task waiting")
    for name in names:
        taskfns.open_gate(name)
    assert [future.result(timeout=GUARD) for future in running] == names
    assert serving.thread is not None
    serving.thread.join(GUARD)
    assert serving.status == [0]
    assert not later.done()
    assert (serving.queue.qsize(), serving.queue.in_flight()) == (1, 0)


def test_after_the_grace_period_running_coroutines_are_cancelled_and_given_back(
    serving: Serving,
) -> None:
    worker = serving.start(AsyncWorker, concurrency=2, grace=0.0)
    executor = serving.executor()
    slow = executor.submit(taskfns.asleep_then, 3600, "late")
    wait_until(lambda: serving.queue.in_flight() == 1, "the task running")
    worker.stop()
    assert serving.thread is not None
    serving.thread.join(GUARD)
    assert serving.status == [0]
    assert not slow.done()
    assert (serving.queue.qsize(), serving.queue.in_flight()) == (1, 0)
    assert serving.queue.dead_letters() == []
    message = serving.queue.get_message(timeout=0)
    assert message.deliveries == 2  # given back, to be delivered again
    message.nack()


def test_plain_functions_finish_despite_the_grace_period(serving: Serving) -> None:
    worker = serving.start(AsyncWorker, concurrency=2, grace=0.0)
    executor = serving.executor()
    slow = executor.submit(taskfns.sleep_then, 1.0, "done")
    wait_until(lambda: serving.queue.in_flight() == 1, "the task running")
    worker.stop()
    assert slow.result(timeout=GUARD) == "done"
    assert serving.thread is not None
    serving.thread.join(GUARD)
    assert serving.status == [0]


def test_a_worker_function_may_be_a_coroutine_function(serving: Serving) -> None:
    results: list[Any] = []

    async def handle(item: Any) -> None:
        await asyncio.sleep(0)
        if item == "bad":
            raise KeyboardInterrupt("not the worker's")
        results.append(item)

    worker = AsyncWorker(serving.queue, handle, poll=0.1, concurrency=1)
    serving.worker = worker
    serving.queue.put_many([1, "bad", 2])
    serving.thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    serving.thread.start()
    wait_until(lambda: results == [1, 2], "both good items handled", show=lambda: results)
    wait_until(lambda: worker.failed >= 1, "the bad item counted as failed")
    worker.stop()
    serving.thread.join(GUARD)
    message = serving.queue.get_message(timeout=GUARD)
    assert (message.item, message.deliveries) == ("bad", 2)  # given back, with back-off
    message.ack()


# -- per-item bookkeeping: back-off, heartbeat, metrics -----------------------------------------


def test_a_coroutine_that_backs_off_pauses_the_whole_queue(queue_url: str) -> None:
    name = f"aio-backoff-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=queue_url, name=name, visibility_timeout=10)
    first, other = f"first-{name}", f"other-{name}"
    q.put(first)
    worker = AsyncWorker(q, function=taskfns.aback_off_first, concurrency=4, poll=0.1)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(taskfns.backed_off.get(first, [])) >= 1, "the first call")
        q.put(other)  # put during the pause: waits for it to end
        wait_until(lambda: len(taskfns.backed_off.get(first, [])) >= 2, "the item again")
        wait_until(lambda: len(taskfns.backed_off.get(other, [])) >= 1, "the other item")
        paused_at = taskfns.backed_off[first][0]
        assert taskfns.backed_off[first][1] - paused_at >= 0.3 - 0.01
        assert taskfns.backed_off[other][0] - paused_at >= 0.3 - 0.01
        wait_until(lambda: q.unfinished_tasks == 0, "both items done")
        assert q.dead_letters() == []  # given back, not failed
        assert worker.failed == 0
    finally:
        worker.stop()
        thread.join(GUARD)
        q.delete()
        q.close()


def test_an_executor_task_that_backs_off_pauses_the_queue_from_the_event_loop_worker(
    serving: Serving,
) -> None:
    serving.start(AsyncWorker, concurrency=4)
    key = f"task-{uuid.uuid4().hex}"
    started = time.monotonic()
    assert serving.executor().submit(taskfns.back_off_task, key, 0.3).result(GUARD) == key
    calls = taskfns.backed_off[key]
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.3 - 0.01
    assert calls[0] >= started
    assert serving.worker is not None and serving.worker.failed == 0


class Recorder:
    """Metrics that remember what they were told."""

    def __init__(self) -> None:
        self.finished: list[tuple[float, str]] = []
        self.waited: list[float] = []
        self.lock = threading.Lock()

    def item_finished(self, seconds: float, outcome: str) -> None:
        with self.lock:
            self.finished.append((seconds, outcome))

    def queue_waited(self, seconds: float) -> None:
        with self.lock:
            self.waited.append(seconds)


def test_metrics_hear_of_every_item_with_its_own_outcome(serving: Serving) -> None:
    metrics = Recorder()
    serving.start(AsyncWorker, concurrency=40, metrics=metrics)
    executor = serving.executor()
    good = [executor.submit(taskfns.aadd, i, 1) for i in range(15)]
    bad = [executor.submit(taskfns.fail, f"no {i}") for i in range(10)]
    plain = [executor.submit(taskfns.add, i, 2) for i in range(5)]
    assert [f.result(timeout=GUARD) for f in good] == [i + 1 for i in range(15)]
    assert [f.result(timeout=GUARD) for f in plain] == [i + 2 for i in range(5)]
    for future in bad:
        with pytest.raises(ValueError):
            future.result(timeout=GUARD)
    wait_until(lambda: len(metrics.finished) == 30, "every item told to the metrics")
    assert Counter(outcome for _, outcome in metrics.finished) == Counter(
        {"processed": 20, "failed": 10}
    )
    assert all(seconds >= 0 for seconds, _ in metrics.finished)
    assert len(metrics.waited) == 30
    assert all(seconds >= 0 for seconds in metrics.waited)


def test_a_failing_item_given_back_is_told_as_retried(serving: Serving) -> None:
    metrics = Recorder()
    name = f"retry-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=serving.url, name=name, visibility_timeout=10)
    worker = AsyncWorker(q, function=taskfns.fail, concurrency=2, poll=0.1, metrics=metrics)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        q.put("always")
        wait_until(lambda: len(metrics.finished) >= 1, "the first failure")
        assert metrics.finished[0][1] == "retried"  # given back to run again later
    finally:
        worker.stop()
        thread.join(GUARD)
        q.delete()
        q.close()


def test_the_heartbeat_lists_the_items_in_hand(serving: Serving) -> None:
    worker = serving.start(AsyncWorker, concurrency=5, heartbeat=0.05)
    registry = open_registry(serving.url)
    try:

        def mine() -> Any:
            found = [w for w in registry.workers() if w.queue == serving.name]
            return found[0] if found else None

        executor = serving.executor()
        names = [f"gate-{uuid.uuid4().hex}" for _ in range(3)]
        futures = [executor.submit(taskfns.gate, name) for name in names]
        wait_until(lambda: mine() is not None and len(mine().current) == 3, "three items in hand")
        entry = mine()
        assert entry.pid == os.getpid()
        assert [item["deliveries"] for item in entry.current] == [1, 1, 1]
        assert len({item["id"] for item in entry.current}) == 3
        assert all(item["since"] >= worker.started - 1 for item in entry.current)
        assert len(worker.describe()["current"]) == 3
        for name in names:
            taskfns.open_gate(name)
        assert [f.result(timeout=GUARD) for f in futures] == names
        wait_until(lambda: mine() is not None and mine().current == [], "no item in hand")
    finally:
        registry.close()
