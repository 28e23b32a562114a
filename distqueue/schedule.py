"""Periodic puts: an item put on a queue at every tick of a schedule, exactly once per tick
however many schedulers run.

A :class:`Periodic` names a schedule: every N seconds (ticks at whole multiples of N since the
Unix epoch, so every scheduler agrees on them), or a cron expression read by ``croniter`` (the
``schedule`` extra) in an explicit time zone (an IANA name such as ``"Europe/Paris"``, or
``"UTC"``; there is no default, so no tick depends on a machine's local settings).

**Once per tick.** A :class:`Scheduler` puts each tick's item with a de-duplication key made of
the schedule's name and the tick's time (see ``dedup_key`` of :meth:`distqueue.Queue.put`): the
server lets exactly one put of a tick through, atomically with the put itself, so any number of
schedulers on any number of machines may run the same schedules, for redundancy.

**Missed ticks.** A scheduler puts only the latest tick that is due, and only while it is at
most ``grace`` seconds old (default: 60 s, or the period when that is shorter): after a
downtime, or a pause longer than a period, the ticks in between are skipped, not made up in a
burst. Schedulers' clocks must agree within ``grace`` seconds (NTP does far better).
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DistQueueError
from .options import check_seconds

__all__ = ["Periodic", "Scheduler"]

_UTC = datetime.timezone.utc
_RETRY_PAUSE = 1.0  # seconds between attempts while the queue's server cannot be reached

logger = logging.getLogger("distqueue.schedule")


def _zone(name: str) -> datetime.tzinfo:
    if name.upper() == "UTC":
        return _UTC
    try:
        import zoneinfo
    except ImportError as exc:  # Python 3.8 has none; 3.10+ always does
        raise ValueError("time zones need the zoneinfo module") from exc
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:
        raise ImportError(
            "cron schedules need croniter: pip install 'distqueue[schedule]'"
        ) from exc
    return croniter


@dataclass(frozen=True)
class Periodic:
    """One schedule: put ``item`` at every tick, ``every`` seconds or by ``cron`` in ``tz``.

    ``name`` identifies the schedule across schedulers (its ticks are claimed under it); it
    must be unique per queue. Raises ``ValueError`` for a bad or missing period, an invalid
    cron expression, a cron without ``tz`` or an unknown zone; ``ImportError`` for a cron
    expression without croniter installed.
    """

    name: str
    item: Any
    every: float | None = None
    cron: str | None = None
    tz: str | None = None
    grace: float | None = None
    _zone: datetime.tzinfo | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a schedule needs a non-empty name, not {self.name!r}")
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name!r}: give either every or cron")
        if self.every is not None:
            check_seconds(self.every, "every", positive=True)
        else:
            if self.tz is None:
                raise ValueError(
                    f"schedule {self.name!r}: a cron schedule needs tz (say 'UTC' or "
                    "'Europe/Paris'): no tick should depend on a machine's local zone"
                )
            object.__setattr__(self, "_zone", _zone(self.tz))
            if not _croniter().is_valid(self.cron):
                raise ValueError(f"schedule {self.name!r}: invalid cron {self.cron!r}")
        if self.grace is not None:
            check_seconds(self.grace, "grace", positive=True)

    def latest_tick(self, now: datetime.datetime) -> datetime.datetime:
        """The latest tick at or before ``now`` (an aware datetime)."""
        if self.every is not None:
            stamp = now.timestamp()
            return datetime.datetime.fromtimestamp(
                math.floor(stamp / self.every) * self.every, _UTC
            )
        local = now.astimezone(self._zone) + datetime.timedelta(microseconds=1)
        tick: datetime.datetime = _croniter()(self.cron, local).get_prev(datetime.datetime)
        return tick

    def next_tick(self, now: datetime.datetime) -> datetime.datetime:
        """The first tick after ``now``."""
        if self.every is not None:
            stamp = now.timestamp()
            return datetime.datetime.fromtimestamp(
                (math.floor(stamp / self.every) + 1) * self.every, _UTC
            )
        tick: datetime.datetime = _croniter()(self.cron, now.astimezone(self._zone)).get_next(
            datetime.datetime
        )
        return tick

    def grace_seconds(self) -> float:
        """How long after a tick a scheduler still puts it (see the module's text)."""
        if self.grace is not None:
            return self.grace
        return min(60.0, self.every) if self.every is not None else 60.0

    def claim_key(self, tick: datetime.datetime) -> str:
        """The de-duplication key of one tick."""
        return f"periodic:{self.name}:{round(tick.timestamp() * 1000)}"


class Scheduler:
    """Puts the items of ``schedules`` on ``queue`` (a :class:`distqueue.Queue`) at their ticks.

    ``clock`` returns the current time as an aware datetime (for tests; the default reads the
    system clock in UTC).
    """

    def __init__(
        self,
        queue: Any,
        schedules: Sequence[Periodic],
        *,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        names = [s.name for s in schedules]
        if len(set(names)) != len(names):
            raise ValueError(f"schedule names must be unique, not {names}")
        self.queue = queue
        self.schedules = list(schedules)
        self._clock = clock or (lambda: datetime.datetime.now(_UTC))
        self._done: dict[str, datetime.datetime] = {}  # the last tick handled, per schedule
        self._stop = threading.Event()

    def run_pending(self) -> int:
        """Put the latest due tick of each schedule that this scheduler has not handled yet and
        that is within its grace; returns how many puts went through here (a tick another
        scheduler put first counts 0). Raises as :meth:`distqueue.Queue.put`."""
        now = self._clock()
        put = 0
        for schedule in self.schedules:
            tick = schedule.latest_tick(now)
            if self._done.get(schedule.name) == tick:
                continue
            if (now - tick).total_seconds() <= schedule.grace_seconds():
                window = schedule.grace_seconds() + 60.0
                key = schedule.claim_key(tick)
                if self.queue.put(schedule.item, dedup_key=key, dedup_for=window):
                    put += 1
            # else missed: skipped, not made up
            self._done[schedule.name] = tick  # only once handled: a failed put is tried again
        return put

    def seconds_to_next(self) -> float:
        """Seconds until the next tick of any schedule."""
        now = self._clock()
        soonest = min(s.next_tick(now) for s in self.schedules)
        return max(0.0, (soonest - now).total_seconds())

    def run(self) -> None:
        """Put ticks until :meth:`stop` is called, sleeping until each next tick. While the
        queue's server cannot be reached it tries again every second (a tick is still put if
        the server is back within its grace)."""
        while not self._stop.is_set():
            try:
                self.run_pending()
            except DistQueueError as exc:  # the server is away: try again while within grace
                logger.warning("scheduler: %s; trying again in %g s", exc, _RETRY_PAUSE)
                self._stop.wait(_RETRY_PAUSE)
                continue
            self._stop.wait(self.seconds_to_next() + 0.001)

    def stop(self) -> None:
        """Make :meth:`run` return (from any thread)."""
        self._stop.set()
