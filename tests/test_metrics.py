"""Prometheus metrics, scraped over HTTP from real processes and parsed with prometheus_client's
own parser: the exporter over a real redis-server, and a worker's --metrics-port."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from processes import GUARD, Workers, distqueue_command, fresh_name, wait_until
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

import distqueue
from distqueue.registry import QUEUES_KEY

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples | None:
    """Every sample at http://127.0.0.1:PORT/metrics, keyed by name and labels; ``None`` while
    nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode("utf-8")
    except OSError:
        return None
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_until(
    port: int, holds: Callable[[Samples], bool], what: str, show: Callable[[], object] | None = None
) -> Samples:
    """The first scrape of ``port`` for which ``holds`` is true."""

    def attempt() -> Samples:
        samples = scrape(port)
        return samples if samples is not None and holds(samples) else {}

    return wait_until(attempt, what, show=show)


@pytest.fixture
def exporter(redis_url: str, tmp_path: Path) -> Iterator[int]:
    """``distqueue exporter`` on a free port; its port."""
    port = free_port()
    log = (tmp_path / "exporter.log").open("wb")
    process = subprocess.Popen(
        distqueue_command("exporter", "--url", redis_url, "--port", str(port)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or scrape(port) is not None,
            "the exporter to answer",
        )
        assert process.poll() is None, (tmp_path / "exporter.log").read_text()
        yield port
    finally:
        process.terminate()
        process.wait(GUARD)
        log.close()


def test_the_exporter_serves_every_queues_figures(
    exporter: int, redis_url: str, workers: Workers
) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        10, url=redis_url, name=fresh_name("metrics"), visibility_timeout=30
    )
    q.put_many(range(6))
    q.get()  # in flight
    q.get_message().reject("bad")
    labels = {"queue": q.name, "kind": "fifo"}
    samples = scrape_until(
        exporter,
        lambda s: value(s, "distqueue_queue_waiting_items", **labels) is not None,
        "the queue in a scrape",
    )
    assert value(samples, "distqueue_exporter_up") == 1
    assert value(samples, "distqueue_queue_waiting_items", **labels) == 4
    assert value(samples, "distqueue_queue_in_flight_items", **labels) == 1
    assert value(samples, "distqueue_queue_dead_letters", **labels) == 1
    assert value(samples, "distqueue_queue_unfinished_tasks", **labels) == 5
    assert value(samples, "distqueue_queue_maxsize", **labels) == 10
    assert value(samples, "distqueue_queue_shut_down", **labels) == 0
    assert value(samples, "distqueue_queue_puts_total", **labels) == 6
    assert value(samples, "distqueue_queue_gets_total", **labels) == 2
    assert value(samples, "distqueue_queue_readable", queue=q.name) == 1
    assert value(samples, "distqueue_workers_up", queue=q.name) == 0
    assert value(samples, "distqueue_queue_oldest_waiting_age_seconds", **labels) is not None

    worker = workers.start(redis_url, q.name, "--heartbeat", "0.2", "taskfns:record")
    scrape_until(
        exporter,
        lambda s: value(s, "distqueue_workers_up", queue=q.name) == 1,
        "the worker counted up",
    )
    workers.stop(worker)
    q.delete()
    q.close()


def test_garbage_in_the_registry_is_a_queue_that_is_not_readable(
    exporter: int, redis_url: str
) -> None:
    name = fresh_name("garbage-metrics")
    with redis.Redis.from_url(redis_url) as raw:
        raw.hset(QUEUES_KEY, name, b"\xff garbage")
    samples = scrape_until(
        exporter,
        lambda s: value(s, "distqueue_queue_readable", queue=name) is not None,
        "the garbage entry in a scrape",
    )
    assert value(samples, "distqueue_queue_readable", queue=name) == 0
    assert value(samples, "distqueue_exporter_up") == 1
    with redis.Redis.from_url(redis_url) as raw:
        raw.hdel(QUEUES_KEY, name)


def test_the_exporter_says_when_the_server_is_down(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from distqueue.metrics import exporter_registry

    registry, collector = exporter_registry(f"redis://127.0.0.1:{free_port()}/0")
    text = generate_latest(registry).decode()
    collector.close()
    assert "distqueue_exporter_up 0.0" in text


def test_a_worker_counts_processed_failed_and_retried_items_and_their_durations(
    workers: Workers, redis_url: str
) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name("wmetrics"))
    port = free_port()
    worker = workers.start(
        redis_url,
        q.name,
        "--metrics-port",
        str(port),
        "--max-deliveries",
        "2",
        "taskfns:fail_first_attempt",
    )
    q.put_many([{"id": i} for i in range(3)])
    labels = {"queue": q.name}
    samples = scrape_until(
        port,
        lambda s: value(s, "distqueue_worker_processed_total", **labels) == 3,
        "three items processed",
        show=lambda: workers.log(worker),
    )
    assert value(samples, "distqueue_worker_failed_total", **labels) == 3
    assert value(samples, "distqueue_worker_retried_total", **labels) == 3
    assert value(samples, "distqueue_worker_task_duration_seconds_count", **labels) == 6
    assert workers.stop(worker) == 0
    q.delete()
    q.close()


def test_a_worker_measures_how_long_executor_tasks_waited(workers: Workers, redis_url: str) -> None:
    import taskfns

    name = fresh_name("waits")
    port = free_port()
    with distqueue.Executor(url=redis_url, queue=name, results=redis_url) as executor:
        futures = [executor.submit(taskfns.add, i, 1) for i in range(4)]
        worker = workers.start(redis_url, name, "--metrics-port", str(port))
        assert [future.result(timeout=GUARD) for future in futures] == [1, 2, 3, 4]
    samples = scrape_until(
        port,
        lambda s: value(s, "distqueue_worker_queue_wait_seconds_count", queue=name) == 4,
        "four waits measured",
        show=lambda: workers.log(worker),
    )
    assert (value(samples, "distqueue_worker_queue_wait_seconds_sum", queue=name) or 0) >= 0
    assert value(samples, "distqueue_worker_processed_total", queue=name) == 4
    assert workers.stop(worker) == 0
