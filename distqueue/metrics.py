"""Prometheus metrics, with the official ``prometheus_client`` (``pip install distqueue[ops]``).

Two sources:

* :class:`QueueCollector` reads every registered queue of a server at each scrape (the
  standalone ``distqueue exporter``)::

      distqueue_queue_waiting_items{queue,kind}        gauge    items waiting
      distqueue_queue_in_flight_items{queue,kind}      gauge    items leased, not acknowledged
      distqueue_queue_dead_letters{queue,kind}         gauge    dead letters
      distqueue_queue_unfinished_tasks{queue,kind}     gauge    put and not yet done
      distqueue_queue_maxsize{queue,kind}              gauge    0 when unbounded
      distqueue_queue_shut_down{queue,kind}            gauge    1 once shut down
      distqueue_queue_oldest_waiting_age_seconds{...}  gauge    sampled (see inspection)
      distqueue_queue_puts_total{queue,kind}           counter  items put (Redis)
      distqueue_queue_gets_total{queue,kind}           counter  items handed out (Redis)
      distqueue_queue_readable{queue}                  gauge    0 for an entry or keys that
                                                                 could not be read
      distqueue_workers_up{queue}                      gauge    workers with a live heartbeat
      distqueue_exporter_up                            gauge    1 when the server answered

* :class:`WorkerMetrics` counts what one worker process does (``distqueue worker
  --metrics-port``)::

      distqueue_worker_processed_total{queue}          counter  items done
      distqueue_worker_failed_total{queue}             counter  items whose run failed
      distqueue_worker_retried_total{queue}            counter  failed items given back to retry
      distqueue_worker_task_duration_seconds{queue}    histogram  time to handle one item
      distqueue_worker_queue_wait_seconds{queue}       histogram  submission to start, for
                                                                 Executor tasks

Rates are Prometheus's business: ``rate(distqueue_queue_puts_total[1m])``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .errors import DistQueueError
from .inspection import Inspector
from .sampling import Sampler, count_workers

logger = logging.getLogger("distqueue.metrics")

DEFAULT_EXPORTER_PORT = 9808


class QueueCollector:
    """A collector of the figures of every queue registered at ``url`` (or only ``queues``),
    read at each scrape. :meth:`close` it."""

    def __init__(self, url: str, queues: list[str] | None = None) -> None:
        self.inspector = Inspector(url)
        self.queues = set(queues) if queues else None
        self._sampler = Sampler()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.inspector.close()

    def describe(self) -> list[Metric]:
        return []  # read at each scrape, never at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "distqueue_exporter_up", "Whether the server answered the last scrape."
        )
        try:
            with self._lock:
                entries = [
                    e
                    for e in self.inspector.registry.queues()
                    if self.queues is None or e.name in self.queues
                ]
                found = self.inspector.figures(entries)
                count_workers(found, self.inspector.registry)
                self._sampler.observe(found)
        except DistQueueError as exc:
            logger.warning("scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["queue", "kind"])

        waiting = gauge("distqueue_queue_waiting_items", "Items waiting in the queue.")
        in_flight = gauge(
            "distqueue_queue_in_flight_items", "Items leased by consumers, not yet acknowledged."
        )
        dead = gauge("distqueue_queue_dead_letters", "Dead letters kept for the queue.")
        unfinished = gauge(
            "distqueue_queue_unfinished_tasks", "Items put and not yet reported done."
        )
        maxsize = gauge("distqueue_queue_maxsize", "The queue's maxsize; 0 when unbounded.")
        shut = gauge("distqueue_queue_shut_down", "1 once the queue has been shut down.")
        oldest = gauge(
            "distqueue_queue_oldest_waiting_age_seconds",
            "How long the oldest waiting item has waited, as sampled by this exporter.",
        )
        puts = CounterMetricFamily(
            "distqueue_queue_puts", "Items put on the queue.", labels=["queue", "kind"]
        )
        gets = CounterMetricFamily(
            "distqueue_queue_gets",
            "Items handed out by the queue, deliveries again included.",
            labels=["queue", "kind"],
        )
        readable = GaugeMetricFamily(
            "distqueue_queue_readable",
            "0 when the queue's registry entry or keys could not be read.",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(
            "distqueue_workers_up", "Workers with a live heartbeat.", labels=["queue"]
        )
        for f in found:
            readable.add_metric([f.name], 0 if f.error else 1)
            workers.add_metric([f.name], f.workers)
            if f.error:
                continue
            labels = [f.name, f.kind]
            waiting.add_metric(labels, f.waiting)
            in_flight.add_metric(labels, f.in_flight)
            dead.add_metric(labels, f.dead)
            unfinished.add_metric(labels, f.unfinished)
            size = f.maxsize if isinstance(f.maxsize, (int, float)) else 0
            maxsize.add_metric(labels, size if math.isfinite(size) and size > 0 else 0)
            shut.add_metric(labels, 1 if f.shut_down else 0)
            if f.oldest_age is not None:
                oldest.add_metric(labels, f.oldest_age)
            if f.puts is not None:
                puts.add_metric(labels, f.puts)
            if f.gets is not None:
                gets.add_metric(labels, f.gets)
        yield from (waiting, in_flight, dead, unfinished, maxsize, shut, oldest, puts, gets)
        yield from (readable, workers)


class WorkerMetrics:
    """The metrics of one worker process, in a registry of their own (``registry``); give it
    to :class:`distqueue.Worker` as ``metrics=``."""

    def __init__(self, queue: str, registry: CollectorRegistry | None = None) -> None:
        self.queue = queue
        self.registry = registry or CollectorRegistry()
        self.processed = Counter(
            "distqueue_worker_processed",
            "Items this worker handled successfully.",
            ["queue"],
            registry=self.registry,
        ).labels(queue)
        self.failed = Counter(
            "distqueue_worker_failed",
            "Items whose run failed on this worker (retried or not).",
            ["queue"],
            registry=self.registry,
        ).labels(queue)
        self.retried = Counter(
            "distqueue_worker_retried",
            "Failed items this worker gave back to be delivered again.",
            ["queue"],
            registry=self.registry,
        ).labels(queue)
        self.duration = Histogram(
            "distqueue_worker_task_duration_seconds",
            "Seconds this worker took to handle one item.",
            ["queue"],
            registry=self.registry,
        ).labels(queue)
        self.wait = Histogram(
            "distqueue_worker_queue_wait_seconds",
            "Seconds Executor tasks waited between their submission and this worker starting "
            "them (by the two machines' clocks).",
            ["queue"],
            registry=self.registry,
        ).labels(queue)

    def queue_waited(self, seconds: float) -> None:
        """Count one Executor task that waited ``seconds`` in the queue."""
        self.wait.observe(seconds)

    def item_finished(self, seconds: float, outcome: str) -> None:
        """Count one item handled in ``seconds``: ``processed``, ``failed`` or ``retried``."""
        self.duration.observe(seconds)
        if outcome == "processed":
            self.processed.inc()
        else:
            self.failed.inc()
            if outcome == "retried":
                self.retried.inc()


def serve(registry: Any, host: str, port: int) -> Any:
    """Serve ``registry`` at ``http://host:port/metrics`` from a thread; returns the server
    (``shutdown()`` it). ``OSError`` when the port is taken."""
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server


def exporter_registry(url: str, queues: list[str] | None = None) -> tuple[Any, QueueCollector]:
    """A registry holding a :class:`QueueCollector` for ``url``, and the collector."""
    registry = CollectorRegistry(auto_describe=False)
    collector = QueueCollector(url, queues)
    registry.register(collector)
    return registry, collector
