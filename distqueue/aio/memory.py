"""A memory queue for asyncio code: the very store of :mod:`distqueue.backends.memory`, so a
name is one queue for threads and coroutines of a process alike.

Every call first tries its work without waiting, under the store's lock (held only for that
instant, never while anyone waits). A call that must wait stands in a line of its kind
(consumers, producers, ``join``) and sleeps on a future. The store tells this object of every
change (:meth:`MemoryBackend.watch`) through ``loop.call_soon_threadsafe``, whichever thread
made it; the loop then wakes as many consumers, in line order, as there are items (every
producer and ``join`` looks again), and each woken task tries its work again, keeping its place
if it came too late. A task cancelled after it was woken passes the wake-up on. The event loop
never blocks on the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..backends.base import DeadLetter, Deadline, Kind, Lease, Limits, PutOptions
from ..backends.memory import MemoryBackend
from ..errors import Empty, Full

_AGAIN: Any = object()  # what an attempt returns when the call must wait longer


class _Slot:
    """A task's place in a line, and the future it sleeps on."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncMemoryBackend:
    """In-process storage for one queue, awaited; see the module's text. ``sync`` is the
    blocking backend on the same store (what ``put_nowait`` and friends use)."""

    shared = False
    copies_items = False

    def __init__(self, name: str, kind: Kind) -> None:
        self.name = name
        self.kind = kind
        self.sync = MemoryBackend(name, kind)
        self._getters: deque[_Slot] = deque()
        self._putters: deque[_Slot] = deque()
        self._joiners: deque[_Slot] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unwatch: Callable[[], None] | None = None
        self._pending = False
        self._lapse: asyncio.TimerHandle | None = None

    # -- waking ----------------------------------------------------------------------------

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:
            if self._unwatch is not None:
                self._unwatch()
            self._loop = loop
            self._pending = False  # news sent to a loop that is gone never arrived
            self._unwatch = self.sync.watch(self._changed)

    def _changed(self) -> None:
        # Any thread, with the store's lock held: hand the news to the loop, once per batch.
        if self._pending:
            return
        self._pending = True
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits there
            loop.call_soon_threadsafe(self._poke)

    def _poke(self) -> None:
        self._pending = False
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None
        if self._getters:
            shut = self.sync.is_shutdown()
            budget = self.sync.qsize()
            for slot in self._getters:
                if not shut and budget <= 0:
                    break
                if slot.future.done():
                    budget -= 1  # woken already, not yet back
                    continue
                slot.future.set_result(None)
                budget -= 1
            if self._getters and self._loop is not None:
                lapse = self.sync.next_change()
                if lapse is not None:
                    self._lapse = self._loop.call_later(lapse, self._poke)
        for line in (self._putters, self._joiners):
            for slot in line:
                _wake(slot.future)

    async def _wait(
        self,
        line: deque[_Slot],
        attempt: Callable[[], Any],
        timeout: float | None,
        ran_out: Callable[[], Exception],
    ) -> Any:
        """``attempt()`` until it returns something else than ``_AGAIN``, waiting in ``line``
        between tries; ``ran_out()`` is raised when ``timeout`` passes first."""
        if not line:
            result = attempt()
            if result is not _AGAIN:
                return result
        if timeout is not None and timeout <= 0:
            raise ran_out()
        loop = asyncio.get_running_loop()
        self._watch(loop)
        deadline = Deadline(timeout)
        slot = _Slot(loop.create_future())
        line.append(slot)
        done = False
        try:
            self._poke()  # a change between the first attempt and now
            while True:
                remaining = deadline.remaining()
                timer = (
                    None if remaining is None else loop.call_later(remaining, _wake, slot.future)
                )
                try:
                    await slot.future
                finally:
                    if timer is not None:
                        timer.cancel()
                result = attempt()
                if result is not _AGAIN:
                    done = True
                    return result
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise ran_out()
                slot.future = loop.create_future()
        finally:
            line.remove(slot)
            if not done and slot.future.done():
                self._poke()  # woken for nothing: wake the next one instead

    # -- the backend protocol, awaited -----------------------------------------------------

    async def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        await self.put_many((item,), maxsize, timeout, single=True)

    async def put_many(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, single: bool = False
    ) -> None:
        sync = self.sync

        def attempt() -> Any:
            try:
                if single:
                    sync.put(items[0], maxsize, 0)
                else:
                    sync.put_many(items, maxsize, 0)
            except Full:
                return _AGAIN
            return None

        await self._wait(self._putters, attempt, timeout, Full)

    async def put_with(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, options: PutOptions
    ) -> bool:
        sync = self.sync

        def attempt() -> Any:
            try:
                return sync.put_with(items, maxsize, 0, options)
            except Full:
                return _AGAIN

        put: bool = await self._wait(self._putters, attempt, timeout, Full)
        return put

    async def scheduled(self) -> int:
        return self.sync.scheduled()

    async def set_limits(self, limits: Limits) -> None:
        self.sync.set_limits(limits)

    async def limits(self) -> Limits:
        return self.sync.limits()

    async def pause(self, seconds: float) -> None:
        self.sync.pause(seconds)

    async def get_many(self, n: int, timeout: float | None) -> list[Any]:
        sync = self.sync

        def attempt() -> Any:
            try:
                return sync.get_many(n, 0)
            except Empty:
                return _AGAIN

        result: list[Any] = await self._wait(self._getters, attempt, timeout, Empty)
        return result

    async def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        sync = self.sync

        def attempt() -> Any:
            try:
                return sync.lease(n, 0, lease_seconds, max_deliveries)
            except Empty:
                return _AGAIN

        result: list[Lease] = await self._wait(self._getters, attempt, timeout, Empty)
        return result

    async def join(self, timeout: float | None) -> bool:
        sync = self.sync

        def attempt() -> Any:
            return True if sync.join(0) else _AGAIN

        try:
            result: bool = await self._wait(self._joiners, attempt, timeout, Empty)
        except Empty:
            return False
        return result

    @property
    def waiting_tasks(self) -> int:
        """How many tasks wait on this queue object right now (for tests)."""
        return len(self._getters) + len(self._putters) + len(self._joiners)

    async def qsize(self) -> int:
        return self.sync.qsize()

    async def task_done(self) -> None:
        self.sync.task_done()

    async def unfinished_tasks(self) -> int:
        return self.sync.unfinished_tasks()

    async def shutdown(self, immediate: bool) -> None:
        self.sync.shutdown(immediate)

    async def is_shutdown(self) -> bool:
        return self.sync.is_shutdown()

    async def delete(self) -> None:
        self.sync.delete()

    async def ack(self, ids: Sequence[str]) -> int:
        return self.sync.ack(ids)

    async def nack(self, ids: Sequence[str], delay: float) -> int:
        return self.sync.nack(ids, delay)

    async def bury(self, ids: Sequence[str], error: str) -> int:
        return self.sync.bury(ids, error)

    async def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        return self.sync.extend(ids, lease_seconds)

    async def in_flight(self) -> int:
        return self.sync.in_flight()

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        return self.sync.dead_letters(limit)

    async def requeue_dead(self, limit: int) -> int:
        return self.sync.requeue_dead(limit)

    async def purge_dead(self, limit: int) -> int:
        return self.sync.purge_dead(limit)

    async def aclose(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._lapse is not None:
            self._lapse.cancel()
