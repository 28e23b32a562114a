"""Rates and ages by sampling: put/get rates over the last minute from the counts the put and
take scripts keep, and the age of the oldest waiting item, which items do not carry.

A :class:`Sampler` lives in a process that keeps looking (``distqueue stats``, the exporter,
the dashboard); each look's figures (:class:`distqueue.inspection.QueueFigures`) go through
:meth:`Sampler.observe`, which fills in what the samples so far tell.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable, Iterable

from .inspection import QueueFigures
from .registry import Registry

RATE_WINDOW = 60.0
"""Seconds of samples rates are computed over."""


class Sampler:
    """Keeps the samples of figures it is shown, and fills in put/get rates (per second, over
    the last :data:`RATE_WINDOW` seconds of samples) and the oldest waiting item's age (since
    when the same item has been at the queue's old end)."""

    def __init__(self, window: float = RATE_WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.clock = clock
        self._samples: dict[str, collections.deque[tuple[float, int, int]]] = {}
        self._oldest: dict[str, tuple[bytes, float]] = {}

    def observe(self, figures: Iterable[QueueFigures]) -> None:
        now = self.clock()
        for f in figures:
            if f.error is not None:
                continue
            if f.puts is not None and f.gets is not None:
                samples = self._samples.setdefault(f.name, collections.deque())
                if samples and (f.puts < samples[-1][1] or f.gets < samples[-1][2]):
                    samples.clear()  # the counters were reset (the queue was deleted)
                samples.append((now, f.puts, f.gets))
                while len(samples) > 2 and samples[1][0] <= now - self.window:
                    samples.popleft()
                first = samples[0]
                if now > first[0]:
                    f.put_rate = (f.puts - first[1]) / (now - first[0])
                    f.get_rate = (f.gets - first[2]) / (now - first[0])
            if f.oldest is None or f.waiting == 0:
                self._oldest.pop(f.name, None)
                continue
            digest = hashlib.blake2b(f.oldest, digest_size=16).digest()
            seen = self._oldest.get(f.name)
            if seen is None or seen[0] != digest:
                self._oldest[f.name] = seen = (digest, now)
            f.oldest_age = now - seen[1]


def count_workers(figures: list[QueueFigures], registry: Registry) -> None:
    """Fill in each queue's number of live workers from the registry."""
    by_queue: dict[str, int] = {}
    for worker in registry.workers():
        if worker.error is None:
            by_queue[worker.queue] = by_queue.get(worker.queue, 0) + 1
    for f in figures:
        f.workers = by_queue.get(f.name, 0)
