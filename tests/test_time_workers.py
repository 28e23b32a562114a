"""Time and rate with workers and the Executor: tasks that ask for a pause, tasks submitted
for later, and a rate limit that holds across worker processes."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import taskfns
from processes import Workers, fresh_name, wait_until

import distqueue
from distqueue.results import ResultStore
from distqueue.worker import Worker

HANG = 30.0


@pytest.fixture(params=["memory", "redis"])
def queue_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


def _start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    return thread


def test_a_function_that_backs_off_pauses_the_whole_queue(queue_url: str) -> None:
    name = f"backoff-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=queue_url, name=name, visibility_timeout=10)
    first, other = f"first-{name}", f"other-{name}"
    q.put(first)
    outcomes: list[str] = []
    metrics = SimpleNamespace(
        item_finished=lambda seconds, outcome: outcomes.append(outcome),
        queue_waited=lambda seconds: None,
    )
    worker = Worker(
        q,
        function=taskfns.back_off_first,
        concurrency=2,
        poll=0.1,
        prefetch=1,
        metrics=metrics,
    )
    thread = _start(worker)
    try:
        wait_until(lambda: len(taskfns.backed_off.get(first, [])) >= 1, "the first call")
        q.put(other)  # put during the pause: waits for it to end
        wait_until(lambda: len(taskfns.backed_off.get(first, [])) >= 2, "the item again")
        wait_until(lambda: len(taskfns.backed_off.get(other, [])) >= 1, "the other item")
        paused_at = taskfns.backed_off[first][0]
        assert taskfns.backed_off[first][1] - paused_at >= 0.3 - 0.01
        assert taskfns.backed_off[other][0] - paused_at >= 0.3 - 0.01
        wait_until(lambda: q.unfinished_tasks == 0, "both items done")
        assert q.dead_letters() == []
        # each item asks for a pause on its first call (back_off_first), then runs: a retry,
        # then processed, for each
        wait_until(lambda: len(outcomes) == 4, "four runs finished", show=lambda: outcomes)
        assert sorted(outcomes) == ["processed", "processed", "retried", "retried"]
    finally:
        worker.stop()
        thread.join(HANG)
        q.delete()
        q.close()


@pytest.fixture
def executor(queue_url: str) -> Iterator[distqueue.Executor]:
    name = f"tasks-{uuid.uuid4().hex}"
    executor = distqueue.Executor(url=queue_url, queue=name)
    queue: distqueue.Queue[Any] = distqueue.Queue(url=queue_url, name=name, visibility_timeout=10)
    results = ResultStore(queue_url)
    worker = Worker(queue, results=results, concurrency=2, poll=0.1, allow=["taskfns"])
    thread = _start(worker)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)
    worker.stop()
    thread.join(HANG)
    queue.delete()
    queue.close()
    results.close()


def test_submit_in_and_submit_at_run_the_task_not_before_its_time(
    executor: distqueue.Executor,
) -> None:
    start = time.monotonic()
    later = executor.submit_in(0.3, taskfns.add, 1, 2)
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.3)
    at_time = executor.submit_at(at, taskfns.add, 2, 2)
    assert later.result(timeout=HANG) == 3
    assert at_time.result(timeout=HANG) == 4
    assert time.monotonic() - start >= 0.3 - 0.05


def test_a_duplicate_submission_is_cancelled(executor: distqueue.Executor) -> None:
    options = distqueue.SubmitOptions(delay=0.2, dedup_key="nightly", dedup_for=60)
    first = executor.submit_with(options, taskfns.add, 1, 1)
    second = executor.submit_with(options, taskfns.add, 2, 2)
    assert first.result(timeout=HANG) == 2
    wait_until(second.cancelled, "the duplicate's future cancelled")


def test_bad_submit_times_are_refused_at_once(executor: distqueue.Executor) -> None:
    with pytest.raises(ValueError):
        executor.submit_in(-1, taskfns.add, 1, 1)
    with pytest.raises(ValueError):
        executor.submit_at(datetime.datetime(2030, 1, 1), taskfns.add, 1, 1)


def test_a_task_that_backs_off_runs_again_after_the_pause(executor: distqueue.Executor) -> None:
    key = f"task-{uuid.uuid4().hex}"
    future = executor.submit(taskfns.back_off_task, key, 0.3)
    assert future.result(timeout=HANG) == key
    calls = taskfns.backed_off[key]
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.3 - 0.01


# -- a rate limit across worker processes ------------------------------------------------


@pytest.mark.slow
def test_a_rate_limit_holds_within_5_percent_over_10_s_with_3_worker_processes(
    tmp_path: Path, redis_url: str
) -> None:
    """Every run records the Redis server's time; over the 10 s from the first, the count is
    within 5% of the limit's (workers that could go faster are held to it)."""
    rate, per, span = 40, 1.0, 10.0
    name = fresh_name("rated")
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    q.set_limits(rate=rate, per=per)
    q.put_many(range(int(rate * (span + 5) / per)))
    workers = Workers(tmp_path, redis_url)
    client = redis.Redis.from_url(redis_url)
    times_key = f"{workers.record_key}:times"
    try:
        for _ in range(3):
            workers.start(redis_url, name, "taskfns:record_server_time", "--prefetch", "1")

        def recorded(index: int) -> int:
            value: Any = client.lindex(times_key, index)
            return int(value)

        wait_until(lambda: client.llen(times_key) > 0, "the first run", timeout=60)
        first = recorded(0)
        end = first + int(span * 1_000_000)
        wait_until(lambda: recorded(-1) >= end, "runs beyond the span", timeout=60)
        times = [int(t) for t in client.lrange(times_key, 0, -1)]
    finally:
        workers.close()
        client.close()
        q.delete()
        q.close()
    within = sum(first <= t < end for t in times)
    expected = rate * span / per
    print(f"rate limit {rate}/{per:g}s: {within} runs in {span:g} s, expected {expected:g}")
    assert abs(within - expected) <= 0.05 * expected, (within, expected)
