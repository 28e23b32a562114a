"""Leases held by one queue object: which thread holds what, and the heartbeat that keeps them.

With ``visibility_timeout`` set, ``get()`` leases an item instead of removing it. The lease is
renewed in the background every third of the visibility timeout for as long as this process is
alive and holds it, so slow work is never handed to a second consumer; when the process dies,
renewal stops and the item is delivered again once the timeout has passed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import DistQueueError

if TYPE_CHECKING:
    from .backends.base import Lease, QueueBackend

logger = logging.getLogger("distqueue.leases")

T = TypeVar("T")

DEFAULT_VISIBILITY_TIMEOUT = 30.0
"""Lease length for :meth:`Queue.get_message` and :meth:`Queue.lease` on a queue created
without ``visibility_timeout``."""

MAX_VISIBILITY_TIMEOUT = 365 * 86400.0
"""The longest lease (or delay before redelivery) a queue may ask for: one year, in seconds."""

MAX_RETRY_DELAY = 60.0


def retry_delay_for(deliveries: int) -> float:
    """Back-off before an item that failed is delivered again: 1 s, 2 s, 4 s ... at most 60 s."""
    return float(min(MAX_RETRY_DELAY, 2 ** max(0, deliveries - 1)))


class Message(Generic[T]):
    """A leased item: acknowledge it when done, give it back, or ask for more time.

    ``item`` is the item; ``deliveries`` counts how many times it has been handed out, this
    time included; ``id`` names the lease. Until :meth:`ack` or :meth:`nack`, the lease is
    renewed in the background while this process lives.
    """

    __slots__ = ("_keeper", "deliveries", "id", "item")

    def __init__(self, keeper: LeaseKeeper, lease: Lease) -> None:
        self._keeper = keeper
        self.id = lease.id
        self.item: T = lease.item
        self.deliveries = lease.deliveries

    def ack(self) -> bool:
        """Done: the item leaves the queue and counts as a finished task.

        Returns ``False`` if it had been acknowledged already (here, or by another consumer
        after the lease ran out). Raises ``BackendConnectionError`` if the server is gone.
        """
        self._keeper.release(self.id)
        return self._keeper.backend.ack([self.id]) == 1

    def nack(self, delay: float = 0.0) -> bool:
        """Give the item back, to be delivered again after ``delay`` seconds (``0``: at once,
        ahead of the other waiting items). Returns ``False`` if the lease was no longer held."""
        if not 0 <= delay <= MAX_VISIBILITY_TIMEOUT:
            raise ValueError(f"'delay' must be a number of seconds from 0 to a year, not {delay!r}")
        self._keeper.release(self.id)
        return self._keeper.backend.nack([self.id], delay) == 1

    def reject(self, reason: str) -> bool:
        """Give up on the item: it becomes a dead letter now, with ``reason`` as its error, and
        counts as a finished task. Returns ``False`` if the lease was no longer held."""
        self._keeper.release(self.id)
        return self._keeper.backend.bury([self.id], reason) == 1

    def abandon(self) -> None:
        """Stop renewing the lease, without telling the server: the item is delivered again
        once the lease runs out. For a consumer that can no longer reach the server."""
        self._keeper.release(self.id)

    def extend(self, seconds: float | None = None) -> bool:
        """Renew the lease to ``seconds`` from now (default: the queue's lease length).

        Returns ``False`` if the lease had already run out and the item went back to the queue.
        """
        if seconds is not None and not 0 < seconds <= MAX_VISIBILITY_TIMEOUT:
            raise ValueError(
                f"'seconds' must be a number of seconds above 0 and at most a year, not {seconds!r}"
            )
        return self._keeper.backend.extend([self.id], seconds or self._keeper.lease_seconds) == 1

    def __repr__(self) -> str:
        return f"<Message id={self.id} deliveries={self.deliveries} item={self.item!r}>"


class LeaseKeeper:
    """The leases one queue object holds, per thread, and the heartbeat that renews them."""

    def __init__(self, backend: QueueBackend, lease_seconds: float) -> None:
        self.backend = backend
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # lease id -> thread that holds it
        self._by_thread: dict[int, deque[str]] = {}  # get() leases, oldest first, for task_done
        self._wake = threading.Event()
        self._closed = False
        self._heartbeat: threading.Thread | None = None

    def hold(self, lease: Lease, *, for_task_done: bool) -> None:
        thread = threading.get_ident()
        with self._lock:
            self._held[lease.id] = thread
            if for_task_done:
                self._by_thread.setdefault(thread, deque()).append(lease.id)
            if self._heartbeat is None and not self._closed:
                self._heartbeat = threading.Thread(
                    target=self._beat, name="distqueue-lease-heartbeat", daemon=True
                )
                self._heartbeat.start()

    def release(self, lease_id: str) -> None:
        with self._lock:
            thread = self._held.pop(lease_id, None)
            if thread is not None:
                pending = self._by_thread.get(thread)
                if pending is not None and lease_id in pending:
                    pending.remove(lease_id)

    def oldest_for_task_done(self) -> str | None:
        """The calling thread's oldest lease taken by get(), else this object's oldest one."""
        with self._lock:
            pending = self._by_thread.get(threading.get_ident())
            if not pending:
                pending = next((p for p in self._by_thread.values() if p), None)
            if not pending:
                return None
            lease_id = pending.popleft()
            self._held.pop(lease_id, None)
            return lease_id

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def _beat(self) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while not self._wake.wait(interval):
            ids = self.held()
            if not ids:
                continue
            try:
                self.backend.extend(ids, self.lease_seconds)
            # The heartbeat must outlive a server restart or a network blip: it logs and tries
            # again at the next beat; leases that ran out meanwhile are delivered again.
            except DistQueueError as exc:
                logger.warning("could not renew %d lease(s): %s", len(ids), exc)

    def close(self) -> None:
        """Stop renewing. Leases still held run out and their items are delivered again."""
        self._closed = True
        self._wake.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5)


def check_lease_settings(visibility_timeout: Any, max_deliveries: Any) -> None:
    """Raise ``ValueError`` unless ``visibility_timeout`` is ``None`` or a finite number of
    seconds in ``(0, MAX_VISIBILITY_TIMEOUT]`` and ``max_deliveries`` an int ``>= 1``.

    Infinity and NaN are refused: a lease that never ends cannot be renewed every third of its
    length, and an item whose consumer died would never come back."""
    if visibility_timeout is not None and not (
        isinstance(visibility_timeout, (int, float))
        and 0 < visibility_timeout <= MAX_VISIBILITY_TIMEOUT
    ):
        raise ValueError(
            f"visibility_timeout must be None or a finite number of seconds above 0 and at "
            f"most {MAX_VISIBILITY_TIMEOUT:.0f} (one year), not {visibility_timeout!r}"
        )
    if not isinstance(max_deliveries, int) or max_deliveries < 1:
        raise ValueError(f"max_deliveries must be an int >= 1, not {max_deliveries!r}")
