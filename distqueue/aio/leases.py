"""Leases held by one asyncio queue object: which task holds what, the heartbeat task that
renews them, and :class:`Message`, the awaitable twin of :class:`distqueue.Message`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Generic, TypeVar

from ..backends.base import Lease
from ..errors import DistQueueError
from ..leases import MAX_VISIBILITY_TIMEOUT

logger = logging.getLogger("distqueue.leases")

T = TypeVar("T")


def _task_key() -> int:
    task = asyncio.current_task()
    return 0 if task is None else id(task)


class AsyncLeaseKeeper:
    """The leases one queue object holds, per task, renewed every third of ``lease_seconds``
    by a task of its own while any is held."""

    def __init__(self, backend: Any, lease_seconds: float) -> None:
        self.backend = backend
        self.lease_seconds = lease_seconds
        self._held: dict[str, int] = {}  # lease id -> task that holds it
        self._by_task: dict[int, deque[str]] = {}  # get() leases, oldest first, for task_done
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False

    def hold(self, lease: Lease, *, for_task_done: bool) -> None:
        key = _task_key()
        self._held[lease.id] = key
        if for_task_done:
            self._by_task.setdefault(key, deque()).append(lease.id)
        if self._heartbeat is None and not self._closed:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    def release(self, lease_id: str) -> None:
        key = self._held.pop(lease_id, None)
        if key is not None:
            pending = self._by_task.get(key)
            if pending is not None and lease_id in pending:
                pending.remove(lease_id)
                if not pending:
                    del self._by_task[key]

    def oldest_for_task_done(self) -> str | None:
        """The calling task's oldest lease taken by get(), else this object's oldest one."""
        pending = self._by_task.get(_task_key())
        if not pending:
            pending = next((p for p in self._by_task.values() if p), None)
        if not pending:
            return None
        lease_id = pending.popleft()
        self._held.pop(lease_id, None)
        return lease_id

    async def _beat(self) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            ids = list(self._held)
            if not ids:
                continue
            try:
                await self.backend.extend(ids, self.lease_seconds)
            # Like the blocking heartbeat: outlive an outage; leases that ran out meanwhile
            # are delivered again.
            except DistQueueError as exc:
                logger.warning("could not renew %d lease(s): %s", len(ids), exc)

    async def aclose(self) -> None:
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None


class Message(Generic[T]):
    """A leased item, as :class:`distqueue.Message`, with awaitable calls: ``await
    message.ack()`` when done, ``nack()`` to give it back, ``reject()`` to make it a dead
    letter, ``extend()`` for more time. The lease is renewed in the background until then.
    Each call raises ``BackendConnectionError`` when the server cannot be reached."""

    __slots__ = ("_keeper", "deliveries", "id", "item")

    def __init__(self, keeper: AsyncLeaseKeeper, lease: Lease) -> None:
        self._keeper = keeper
        self.id = lease.id
        self.item: T = lease.item
        self.deliveries = lease.deliveries

    async def ack(self) -> bool:
        """Done: the item leaves the queue and counts as finished. ``False`` if it had been
        acknowledged already (here, or by another consumer after the lease ran out)."""
        self._keeper.release(self.id)
        return bool(await self._keeper.backend.ack([self.id]) == 1)

    async def nack(self, delay: float = 0.0) -> bool:
        """Give the item back, delivered again after ``delay`` seconds (0: at once, ahead of
        the others). ``False`` if the lease was no longer held; ``ValueError`` for a delay
        outside 0 to a year."""
        if not 0 <= delay <= MAX_VISIBILITY_TIMEOUT:
            raise ValueError(f"'delay' must be a number of seconds from 0 to a year, not {delay!r}")
        self._keeper.release(self.id)
        return bool(await self._keeper.backend.nack([self.id], delay) == 1)

    async def reject(self, reason: str) -> bool:
        """Make the item a dead letter now, with ``reason``; it counts as finished. ``False``
        if the lease was no longer held."""
        self._keeper.release(self.id)
        return bool(await self._keeper.backend.bury([self.id], reason) == 1)

    def abandon(self) -> None:
        """Stop renewing the lease without telling the server: the item is delivered again
        once the lease runs out."""
        self._keeper.release(self.id)

    async def extend(self, seconds: float | None = None) -> bool:
        """Renew the lease to ``seconds`` from now (default: the queue's lease length).
        ``False`` if it had run out and the item went back to the queue."""
        if seconds is not None and not 0 < seconds <= MAX_VISIBILITY_TIMEOUT:
            raise ValueError(
                f"'seconds' must be a number of seconds above 0 and at most a year, not {seconds!r}"
            )
        lease_seconds = seconds or self._keeper.lease_seconds
        return bool(await self._keeper.backend.extend([self.id], lease_seconds) == 1)

    def __repr__(self) -> str:
        return f"<Message id={self.id} deliveries={self.deliveries} item={self.item!r}>"
