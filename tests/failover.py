"""A run of producers and consumers through a fail-over, and what it proves.

Used by test_cluster.py and test_sentinel.py: :func:`run_through` puts ``count`` numbered items
at a steady pace while consumers lease and acknowledge them, calls ``fail`` once a third is
acknowledged, and returns what happened to every item.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import distqueue


@dataclass
class Run:
    """What happened to the items of one run (times are ``time.monotonic()``)."""

    count: int
    put: set[int] = field(default_factory=set)
    put_unknown: set[int] = field(default_factory=set)
    deliveries: dict[int, list[float]] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)  # first ack that returned True
    ack_refused: set[int] = field(default_factory=set)  # acks that returned False
    errors: list[str] = field(default_factory=list)
    failed_at: float = 0.0
    failed_over_at: float = 0.0
    put_times: list[float] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def lost(self) -> set[int]:
        """Items whose put was acknowledged and that no consumer ever got."""
        return self.put - set(self.deliveries)

    @property
    def redelivered(self) -> set[int]:
        return {item for item, times in self.deliveries.items() if len(times) > 1}

    @property
    def delivered_after_ack(self) -> set[int]:
        """Items delivered again after an ack of theirs returned True: an ack undone."""
        return {
            item
            for item, at in self.acked.items()
            if any(delivered > at for delivered in self.deliveries[item])
        }

    @staticmethod
    def _longest_pause(times: list[float]) -> float:
        ordered = sorted(times)
        return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)

    @property
    def put_pause(self) -> float:
        """The longest time between two acknowledged puts: how long producers were held up."""
        return self._longest_pause(self.put_times)

    @property
    def ack_pause(self) -> float:
        """The longest time between two acknowledgements: how long consumers were held up."""
        return self._longest_pause(self.ack_times)

    def summary(self) -> str:
        return (
            f"{len(self.put)} put, {len(self.put_unknown)} with an unknown outcome, "
            f"{len(self.acked)} acknowledged, {len(self.lost)} lost, "
            f"{len(self.redelivered)} redelivered, {len(self.ack_refused)} late acks refused; "
            f"fail-over (kill to promotion seen) {self.failed_over_at - self.failed_at:.2f} s, "
            f"producers held up {self.put_pause:.2f} s, consumers held up {self.ack_pause:.2f} s; "
            f"errors: {self.errors[:5]}"
        )


def assert_nothing_lost(run: Run) -> None:
    """What a fail-over may never do: lose an acknowledged put, deliver an acknowledged item
    again, redeliver an item whose lease began after the fail-over, or fail a call."""
    assert not run.lost, f"acknowledged puts never delivered: {sorted(run.lost)[:20]}"
    assert run.put | run.put_unknown == set(range(run.count))
    assert not run.delivered_after_ack, (
        f"acknowledged items delivered again: {sorted(run.delivered_after_ack)[:20]}"
    )
    # a redelivery is an item whose lease was running when the master died
    for item in run.redelivered:
        assert run.deliveries[item][0] < run.failed_over_at, (item, run.summary())
    assert not run.errors, run.summary()


def run_through(
    url: str,
    name: str,
    fail: Callable[[], object],
    *,
    count: int = 3000,
    consumers: int = 3,
    batch: int = 10,
    pace: float = 0.01,
    visibility_timeout: float = 3.0,
    guard: float = 90.0,
) -> Run:
    """On queue ``name``, put ``count`` items in batches every ``pace`` seconds, consume them
    with ``consumers`` threads, call ``fail()`` (which returns once the fail-over is over) when
    a third are acknowledged, and wait until every item whose put was acknowledged has been
    acknowledged."""
    run = Run(count)
    stop = threading.Event()
    third = threading.Event()

    def produce() -> None:
        with distqueue.Queue(url=url, name=name) as q:
            for start in range(0, count, batch):
                items = list(range(start, min(start + batch, count)))
                try:
                    q.put_many(items)
                except distqueue.BackendError as exc:  # OutcomeUnknownError among them
                    with run.lock:
                        run.put_unknown.update(items)
                        run.errors.append(f"put: {exc!r}")
                    continue
                now = time.monotonic()
                with run.lock:
                    run.put.update(items)
                    run.put_times.append(now)
                time.sleep(pace)

    def consume() -> None:
        with distqueue.Queue(url=url, name=name, visibility_timeout=visibility_timeout) as q:
            while not stop.is_set():
                try:
                    message = q.get_message(timeout=0.2)
                except distqueue.Empty:
                    continue
                except distqueue.BackendError as exc:
                    with run.lock:
                        run.errors.append(f"get: {exc!r}")
                    continue
                with run.lock:
                    run.deliveries.setdefault(message.item, []).append(time.monotonic())
                try:
                    acknowledged = message.ack()
                except distqueue.BackendError as exc:
                    with run.lock:
                        run.errors.append(f"ack: {exc!r}")
                    continue
                now = time.monotonic()
                with run.lock:
                    if not acknowledged:
                        run.ack_refused.add(message.item)
                        continue
                    run.acked.setdefault(message.item, now)
                    run.ack_times.append(now)
                    if len(run.acked) >= count // 3:
                        third.set()

    threads = [threading.Thread(target=produce, daemon=True)]
    threads += [threading.Thread(target=consume, daemon=True) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    try:
        assert third.wait(guard), f"a third of the items not acknowledged: {run.summary()}"
        run.failed_at = time.monotonic()
        fail()
        run.failed_over_at = time.monotonic()
        threads[0].join(guard)
        assert not threads[0].is_alive(), f"the producer did not finish: {run.summary()}"
        deadline = time.monotonic() + guard
        while time.monotonic() < deadline:
            with run.lock:
                if run.put <= set(run.acked):
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads[1:]:
            thread.join(10)
    with distqueue.Queue(url=url, name=name) as q:
        q.delete()
    return run
