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
from typing import Any, Protocol


class Kind(enum.Enum):
    """The order in which a queue hands out its items."""

    FIFO = "fifo"
    LIFO = "lifo"
    PRIORITY = "priority"


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

    def close(self) -> None:
        """Release connections. The backend is not used afterwards."""


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
