"""The memory backend's clockwork for one queue: scheduled items, de-duplication keys, and the
limits on taking (a rate, a concurrency, a pause).

Like :class:`~distqueue.backends.ledger.Ledger` it is not thread-safe on its own: the memory
backend calls it with the queue's lock held, and moves items in and out of the queue itself.
Times are on the monotonic clock, in seconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

from .base import Limits

__all__ = ["Timetable"]


class Timetable:
    """The time-bound state of one memory queue.

    ``due``
        a heap of ``(due time, sequence, item)``: items put with a delay, not yet visible.
    ``dedup``
        de-duplication key -> the end of its window.
    ``limited``
        whether any limit is set or a pause is running (the hot paths look at this only).
    """

    __slots__ = ("counter", "dedup", "due", "grants", "limited", "limits", "paused_until")

    def __init__(self) -> None:
        self.due: list[tuple[float, int, Any]] = []
        self.counter = itertools.count()
        self.dedup: dict[str, float] = {}
        self.limits = Limits()
        self.grants: deque[float] = deque()  # when each item within the rate period was taken
        self.paused_until = 0.0
        self.limited = False

    def clear(self) -> None:
        self.due.clear()
        self.dedup.clear()
        self.limits = Limits()
        self.grants.clear()
        self.paused_until = 0.0
        self.limited = False

    # -- scheduled items -------------------------------------------------------------------

    def schedule(self, at: float, items: Sequence[Any]) -> None:
        """Keep ``items`` until ``at``; items due at the same time keep their order."""
        for item in items:
            heapq.heappush(self.due, (at, next(self.counter), item))

    def pop_due(self, now: float) -> list[Any]:
        """Take the items due by ``now``, earliest first."""
        due = self.due
        out = []
        while due and due[0][0] <= now:
            out.append(heapq.heappop(due)[2])
        return out

    def until_due(self, now: float) -> float | None:
        """Seconds until the earliest scheduled item is due (at least 1 ms), or ``None``."""
        if not self.due:
            return None
        return max(0.001, self.due[0][0] - now)

    def drop_scheduled(self) -> int:
        """Drop every scheduled item; how many there were."""
        dropped = len(self.due)
        self.due.clear()
        return dropped

    # -- de-duplication --------------------------------------------------------------------

    def is_duplicate(self, key: str, now: float) -> bool:
        return self.dedup.get(key, 0.0) > now

    def claim(self, key: str, until: float, now: float) -> None:
        """Hold ``key`` until ``until``; ended windows are forgotten now and then."""
        dedup = self.dedup
        if len(dedup) >= 1024 and len(dedup) % 1024 == 0:
            for old in [k for k, end in dedup.items() if end <= now]:
                del dedup[old]
        dedup[key] = until

    # -- limits ----------------------------------------------------------------------------

    def set_limits(self, limits: Limits) -> None:
        self.limits = limits
        self.grants.clear()
        self._update()

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)
        self._update()

    def _update(self) -> None:
        limits = self.limits
        self.limited = (
            limits.rate is not None or limits.concurrency is not None or self.paused_until > 0
        )

    def allowance(
        self, want: int, leased: int, leasing: bool, now: float
    ) -> tuple[int, float | None]:
        """How many of ``want`` items may be taken now, and when none may: the seconds until
        that may change by the clock (``None``: only when a lease ends)."""
        if self.paused_until > now:
            return 0, self.paused_until - now
        if self.paused_until:
            self.paused_until = 0.0
            self._update()
        limits = self.limits
        allowed = want
        wait: float | None = None
        if limits.rate is not None:
            grants = self.grants
            while grants and grants[0] <= now - limits.per:
                grants.popleft()
            allowed = min(allowed, limits.rate - len(grants))
            if allowed <= 0:
                wait = max(0.001, grants[0] + limits.per - now)
        if leasing and limits.concurrency is not None and allowed > 0:
            allowed = min(allowed, limits.concurrency - leased)
        return max(0, allowed), wait

    def grant(self, n: int, now: float) -> None:
        """``n`` items were taken at ``now``."""
        if self.limits.rate is not None:
            self.grants.extend([now] * n)
