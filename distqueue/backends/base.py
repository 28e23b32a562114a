"""The backend protocol: what a storage backend must provide to serve distqueue's queues.

A backend object serves ONE queue (one name, one kind). The public classes in
:mod:`distqueue.queue` validate arguments and own the standard library's contract; a backend
owns storage and waiting, and makes every multi-step change atomic: within one process for the
memory backend, on the server for Redis.

Timeouts given to a backend are already validated: ``None`` waits forever, ``0`` never waits,
a positive float waits at most that many seconds. Backends raise only distqueue's exceptions
(:mod:`distqueue.errors`); errors of client libraries are translated at this boundary.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


class Kind(enum.Enum):
    """The order in which a queue hands out its items."""

    FIFO = "fifo"
    LIFO = "lifo"
    PRIORITY = "priority"


class Lease(NamedTuple):
    """An item handed to one consumer until it is acknowledged, given back, or its lease ends."""

    id: str
    item: Any
    deliveries: int


@dataclass(frozen=True)
class DeadLetter:
    """An item that left the queue unprocessed: delivered too often, or impossible to decode.

    ``item`` is the decoded item, or ``None`` when it could not be decoded; ``payload`` is the
    stored bytes on a shared backend, ``None`` in memory.
    """

    id: str
    item: Any
    payload: bytes | None
    deliveries: int
    error: str


class PutOptions(NamedTuple):
    """How a put is done beyond the standard library's: later, and only once per key.

    ``delay``: seconds from now, by the backend's clock (the server's for Redis), before the
    items become visible; ``at``: a POSIX timestamp for the same (at most one of the two; a
    time already past means at once). ``dedup_key``: put nothing when a put with this key
    happened within the last ``dedup_for`` seconds (a scheduled item holds its key at least
    until it comes due).
    """

    delay: float | None = None
    at: float | None = None
    dedup_key: str | None = None
    dedup_for: float = 0.0

    def delay_from(self, now: float) -> float:
        """Seconds until the items are due, from the POSIX time ``now`` (``<= 0``: at once)."""
        if self.at is not None:
            return self.at - now
        return self.delay or 0.0


@dataclass(frozen=True)
class Limits:
    """The limits on taking from one queue, kept with the queue and honoured by every consumer.

    ``rate``: at most this many items taken in any ``per`` seconds; ``concurrency``: at most
    this many items leased at once. ``None``: no such limit.
    """

    rate: int | None = None
    per: float = 1.0
    concurrency: int | None = None


class QueueBackend(Protocol):
    """Storage for one queue.

    Capability flags:

    ``shared``
        ``True`` when two queue objects with the same name in different processes see the same
        items (Redis); ``False`` for in-process storage (memory).
    ``copies_items``
        ``True`` when items are serialized on the way in (a ``get`` returns an equal copy);
        ``False`` when the very object put is the object got back, as in the standard library.
    """

    shared: bool
    copies_items: bool
    name: str

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        """Add ``item``, waiting while ``maxsize > 0`` and the queue holds ``maxsize`` items.

        Counts one more unfinished task. Raises ``Full`` when the wait ends without room,
        ``ShutDown`` when the queue is shut down (also while waiting), ``SerializationError``
        before anything is written when the item cannot be encoded.
        """

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        """Add all ``items`` in one atomic step, waiting until there is room for all of them.

        The caller guarantees ``maxsize == 0 or len(items) <= maxsize``. Raises as :meth:`put`.
        """

    def put_with(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, options: PutOptions
    ) -> bool:
        """Add ``items`` in one atomic step as :meth:`put_many` does, with ``options``.

        Items due later never wait for room: they are kept aside, counted as unfinished, and
        enter the queue when due (even beyond ``maxsize``). Returns ``False``, adding nothing,
        when ``options.dedup_key`` is held. Raises as :meth:`put`.
        """

    def scheduled(self) -> int:
        """The number of items put with a delay that are not yet due."""

    def set_limits(self, limits: Limits) -> None:
        """Replace the queue's limits (for every user of it)."""

    def limits(self) -> Limits:
        """The queue's limits."""

    def pause(self, seconds: float) -> None:
        """Let no consumer take an item for ``seconds`` from now (a longer pause stays)."""

    def get(self, timeout: float | None) -> Any:
        """Remove and return the next item, waiting for one.

        Raises ``Empty`` when the wait ends with none, ``ShutDown`` when the queue is shut down
        and empty (also while waiting), ``DeserializationError`` when the next stored payload
        cannot be decoded (it is moved to the dead-letter list; the next call goes on).
        """

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        """Remove and return up to ``n`` items (``n >= 1``), waiting until at least one is there.

        Raises as :meth:`get`.
        """

    def qsize(self) -> int:
        """The number of waiting items at this moment."""

    def task_done(self) -> None:
        """Count one unfinished task as finished; ``ValueError`` when none is unfinished."""

    def join(self, timeout: float | None) -> bool:
        """Wait until no task is unfinished. Returns ``False`` if ``timeout`` ran out first."""

    def unfinished_tasks(self) -> int:
        """The number of items put and not yet marked done."""

    def shutdown(self, immediate: bool) -> None:
        """Shut the queue down for every user of it; with ``immediate``, drop the waiting items,
        counting each as done, and wake ``join()``. Wakes every blocked ``put`` and ``get``."""

    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` has been called on this queue (by anyone)."""

    def delete(self) -> None:
        """Delete the queue and everything it holds: items, leases, dead letters, counters,
        the shutdown state. The name is then free for a new queue."""

    def close(self) -> None:
        """Release connections. The backend is not used afterwards."""

    # -- leases: at-least-once delivery ----------------------------------------------------

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        """Take up to ``n`` items (at least one, waiting as :meth:`get`) under a lease.

        A leased item stays unfinished until :meth:`ack`; if its lease runs out first it is
        delivered again, ahead of other waiting items. An item about to be delivered more than
        ``max_deliveries`` times becomes a dead letter instead. Raises as :meth:`get`.
        """

    def ack(self, ids: Sequence[str]) -> int:
        """Acknowledge leased items: done, gone for good. Returns how many were still held."""

    def nack(self, ids: Sequence[str], delay: float) -> int:
        """Give leased items back, to be delivered again after ``delay`` seconds."""

    def bury(self, ids: Sequence[str], error: str) -> int:
        """Make leased items dead letters now, with ``error`` as the reason. Returns how many
        were still held."""

    def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        """Renew leases to ``lease_seconds`` from now. Returns how many were still held."""

    def in_flight(self) -> int:
        """The number of items leased and not yet acknowledged."""

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters."""

    def requeue_dead(self, limit: int) -> int:
        """Put up to ``limit`` dead letters back on the queue, oldest first."""

    def purge_dead(self, limit: int) -> int:
        """Delete up to ``limit`` dead letters for good, oldest first."""


class Deadline:
    """A point in time on the monotonic clock, from a validated timeout (``None`` = never)."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (``<= 0`` once passed), or ``None`` when there is no deadline."""
        if self.at is None:
            return None
        return self.at - time.monotonic()


class Backoff:
    """Growing pauses between attempts: ``first`` seconds, doubled each time up to ``limit``."""

    __slots__ = ("_limit", "_next")

    def __init__(self, first: float, limit: float) -> None:
        self._next = first
        self._limit = limit

    def __call__(self) -> float:
        """The next pause, in seconds."""
        pause = self._next
        self._next = min(pause * 2, self._limit)
        return pause
