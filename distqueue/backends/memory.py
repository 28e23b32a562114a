"""The in-process backend: a deque, or a priority heap, guarded by one lock per queue.

Items are passed by reference, exactly as with the standard library. Queue objects in one
process that use the same name share one store; different processes never share anything.
This backend is both a product (the default) and the reference the other backends are tested
against. Its parts:

* :class:`MemoryBackend` (here): the :class:`~distqueue.backends.base.QueueBackend` contract
  over a ``deque`` (FIFO, LIFO) or a :class:`~distqueue.backends.heap.PriorityHeap`, with one
  lock and a condition for each kind of waiter;
* :mod:`distqueue.backends.heap`: the priority heap;
* :mod:`distqueue.backends.ledger`: the lease bookkeeping (leases, redeliveries, delivery
  counts, dead letters, the tokens that name one delivery).

Rules beyond the standard library, kept the same as on Redis:

* Priority order where Python has none: values whose comparison raises ``TypeError`` (or
  ``decimal.InvalidOperation``), and values holding a NaN, are ordered by
  :func:`distqueue.ordering.sort_key`, the key Redis sorts by; ties go by arrival.
* A put that raises leaves nothing behind, and ``put_many`` adds all its items or none.
* A waiting ``put_many`` lets at most ``maxsize`` items of other puts go ahead of it; after
  that it holds the room that frees up, and later puts wait until it is in or gives up.
* ``delete()`` empties the store in place, so every handle sees a fresh queue.
* A ``SimpleQueue`` store takes no lock on ``put`` (one atomic ``deque.append`` and a wake-up
  that never blocks), so a signal handler may put while the same thread is inside a put.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import Empty, Full, ShutDown
from .base import DeadLetter, Deadline, Kind, Lease, Limits, PutOptions
from .heap import PriorityHeap
from .ledger import GONE, Ledger
from .timing import Timetable

__all__ = ["MemoryBackend", "SimpleMemoryBackend"]

_registry: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()
_monotonic = time.monotonic


class _Batch:
    """A ``put_many`` waiting for room: its size, and how many items other puts added since
    it became the first waiting batch."""

    __slots__ = ("n", "passed")

    def __init__(self, n: int) -> None:
        self.n = n
        self.passed = 0


class _Redelivery:
    """An item back in a FIFO or LIFO queue after its lease ran out, with that delivery's
    token. (In a priority queue the ledger keeps the token by the entry's sequence number.)"""

    __slots__ = ("id", "item")

    def __init__(self, token: str, item: Any) -> None:
        self.id = token
        self.item = item


class _Store:
    """The shared state of one in-memory queue."""

    def __init__(self, kind: Kind, simple: bool) -> None:
        self.kind = kind
        self.simple = simple
        # The whole store is under one lock. Each kind of waiter sleeps on a condition of its
        # own over that lock, so that a notify reaches a thread that can act on it.
        lock = self.lock = threading.Lock()
        self.item_added = threading.Condition(lock)  # gets and leases of an empty queue
        self.room_freed = threading.Condition(lock)  # single puts into a full queue
        self.batch_room = threading.Condition(lock)  # put_many waiting for room for all
        self.tasks_done = threading.Condition(lock)  # join(), until nothing is unfinished
        self.batches: deque[_Batch] = deque()  # waiting put_many calls, first come first
        self.unfinished_tasks = 0
        self.is_shutdown = False
        # A SimpleQueue's wake-up: unlocked while a put may have left an item for a sleeping
        # consumer; a consumer locks it again by acquiring it. Never held while waiting for
        # anything else, so a put only ever releases it.
        self.wakeup = threading.Lock()
        self.wakeup.acquire()
        # The threads blocked in a call right now, for MemoryBackend.waiting_threads. A list,
        # so that a SimpleQueue get can add itself without the lock (append is atomic).
        self.sleepers: list[int] = []
        self.items: Any = PriorityHeap() if kind is Kind.PRIORITY else deque()
        self.ledger = Ledger(priority=kind is Kind.PRIORITY)
        self.timing = Timetable()
        # Callbacks of MemoryBackend.watch, called after every notify while there are any.
        self.watchers: list[Callable[[], None]] = []

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """See :meth:`MemoryBackend.watch`; lock not held."""
        with self.lock:
            if not self.watchers:
                # Each condition's notify calls the watchers too. Set on the instances, so a
                # store nobody watches pays nothing: notify is the class's own.
                for condition in (
                    self.item_added,
                    self.room_freed,
                    self.batch_room,
                    self.tasks_done,
                ):
                    condition.notify = self._watched(condition.notify)  # type: ignore[method-assign]
                    condition.notify_all = self._watched(condition.notify_all)  # type: ignore[method-assign]
            self.watchers.append(callback)

        def unwatch() -> None:
            with self.lock:
                if callback in self.watchers:
                    self.watchers.remove(callback)

        return unwatch

    def _watched(self, notify: Callable[..., None]) -> Callable[..., None]:
        watchers = self.watchers

        def notify_and_tell(*args: Any) -> None:
            notify(*args)
            for callback in list(watchers):
                callback()

        return notify_and_tell


def _describe(kind: Kind, simple: bool) -> str:
    return "SimpleQueue" if simple else f"{kind.value} queue"


def _store_for(name: str, kind: Kind, simple: bool) -> _Store:
    with _registry_lock:
        store = _registry.get(name)
        if store is None:
            store = _Store(kind, simple)
            _registry[name] = store
        elif store.kind is not kind or store.simple is not simple:
            raise ValueError(
                f"queue {name!r} already exists in this process as a "
                f"{_describe(store.kind, store.simple)}, not a {_describe(kind, simple)}"
            )
        return store


class MemoryBackend:
    """In-process storage for one queue; see :class:`distqueue.backends.base.QueueBackend`.

    A name is a queue of one ``kind`` in a process (or a ``SimpleQueue``, see
    :class:`SimpleMemoryBackend`), never two.
    """

    shared = False
    copies_items = False
    _simple = False

    def __init__(self, name: str, kind: Kind) -> None:
        self.name = name
        self.kind = kind
        store = self._store = _store_for(name, kind, self._simple)
        self._ledger = store.ledger
        self._timing = store.timing
        self._due = store.timing.due  # truthy while items are scheduled
        self._lock = store.lock
        self._item_added = store.item_added
        self._room_freed = store.room_freed
        self._tasks_done = store.tasks_done
        # The hot paths call these bound methods directly. _items is what len() and truth
        # read, in C: the deque, or the heap's list.
        self._push: Any
        self._pop: Any  # removes the next item
        self._take: Any  # removes the next element as stored (a heap entry, a redelivery)
        items = store.items
        if kind is Kind.PRIORITY:
            self._heap: PriorityHeap = items
            self._items: Any = items.heap
            self._push, self._pop, self._take = items.push, items.pop, items.take
        else:
            self._items = items
            self._push = items.append
            self._pop = self._take = items.popleft if kind is Kind.FIFO else items.pop

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change to this queue that may let a waiting call go
        on: an item added or back, room made, a task finished, a shutdown, a delete. Returns a
        function that stops the calls.

        It is called in the thread that made the change, with the queue's lock held, so it
        must return at once and must not use the queue: hand the news on, as
        ``loop.call_soon_threadsafe`` does. This is how :mod:`distqueue.aio` waits on a
        memory queue without blocking its event loop while threads use the queue too. (A
        lease that runs out is no change: see :meth:`next_change`.)
        """
        return self._store.watch(callback)

    def next_change(self) -> float | None:
        """Seconds until a waiting consumer may find an item though nobody puts one: the
        earliest lease runs out (its item waits again), the earliest scheduled item comes due,
        or a limit lets go; ``None`` when none of these is pending."""
        with self._lock:
            clock = None
            if self._timing.limited:
                leased = len(self._ledger.leased)
                _, clock = self._timing.allowance(1, leased, True, time.monotonic())
            return self._wake_time(None, clock)

    @property
    def waiting_threads(self) -> int:
        """How many threads are blocked in a call on this queue right now, through any handle
        and in any call that waits (get, put, put_many, join, lease). Read-only: tests read
        it to know that a thread they started has really blocked."""
        return len(self._store.sleepers)

    def _sleep(self, condition: threading.Condition, timeout: float | None) -> None:
        """Wait on ``condition`` (lock held), counted in :attr:`waiting_threads` meanwhile."""
        sleepers = self._store.sleepers
        sleepers.append(threading.get_ident())
        try:
            condition.wait(timeout)
        finally:
            sleepers.remove(threading.get_ident())

    # -- putting ---------------------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        store = self._store
        with self._lock:
            if store.is_shutdown:
                raise ShutDown
            if self._due and self._due[0][0] <= _monotonic():
                self._promote()
            if maxsize > 0 and (len(self._items) >= maxsize or store.batches):
                self._make_room(1, maxsize, timeout, None)
            self._push(item)  # a push that raises has added nothing
            store.unfinished_tasks += 1
            self._item_added.notify()

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        store = self._store
        with self._lock:
            if store.is_shutdown:
                raise ShutDown
            if self._due:
                self._promote()
            if maxsize > 0 and (len(self._items) + len(items) > maxsize or store.batches):
                self._make_room(len(items), maxsize, timeout, _Batch(len(items)))
            self._push_all(items)
            store.unfinished_tasks += len(items)
            self._item_added.notify(len(items))

    def _push_all(self, items: Sequence[Any]) -> None:
        if self.kind is Kind.PRIORITY:
            self._heap.push_all(items)
        else:
            self._items.extend(items)

    def put_with(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, options: PutOptions
    ) -> bool:
        store = self._store
        timing = self._timing
        key = options.dedup_key
        with self._lock:
            if store.is_shutdown:
                raise ShutDown
            delay = options.delay_from(time.time()) if options.at is not None else options.delay
            delay = delay or 0.0
            if key is not None and timing.is_duplicate(key, time.monotonic()):
                return False
            n = len(items)
            if delay > 0:
                timing.schedule(time.monotonic() + delay, items)
                self._item_added.notify_all()  # waiters work out again when to wake
            else:
                if self._due:
                    self._promote()
                if maxsize > 0 and (len(self._items) + n > maxsize or store.batches):
                    self._make_room(n, maxsize, timeout, _Batch(n) if n > 1 else None)
                    # the lock was let go while waiting: someone may have taken the key
                    if key is not None and timing.is_duplicate(key, time.monotonic()):
                        return False
                self._push_all(items)
                self._item_added.notify(n)
            if key is not None:
                now = time.monotonic()
                timing.claim(key, now + max(options.dedup_for, delay), now)
            store.unfinished_tasks += n
            return True

    def _promote(self) -> None:
        """Move the scheduled items that are due into the queue. Lock held."""
        due = self._timing.pop_due(time.monotonic())
        if due:
            self._push_all(due)
            self._item_added.notify(len(due))

    def scheduled(self) -> int:
        with self._lock:
            if self._due:
                self._promote()
            return len(self._due)

    def set_limits(self, limits: Limits) -> None:
        with self._lock:
            self._timing.set_limits(limits)
            self._item_added.notify_all()

    def limits(self) -> Limits:
        return self._timing.limits

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._timing.pause(time.monotonic() + seconds)

    def _blocked(self, n: int, maxsize: int, batch: _Batch | None) -> bool:
        """Whether a put of ``n`` items must wait: no room, or room held by an earlier batch."""
        batches = self._store.batches
        if batches and batches[0] is not batch and batches[0].passed >= maxsize:
            return True
        return len(self._items) + n > maxsize

    def _make_room(self, n: int, maxsize: int, timeout: float | None, batch: _Batch | None) -> None:
        """Return once ``n`` items may go in, waiting if needed; called with the lock held.

        A put that goes ahead of the first waiting batch counts against that batch's patience.
        ``batch`` is the caller's own ticket when it is a ``put_many``.
        """
        store = self._store
        if self._blocked(n, maxsize, batch):
            if timeout is not None and timeout <= 0:
                raise Full
            if batch is None:
                self._wait_for_room(n, maxsize, timeout, None, self._room_freed)
            else:
                store.batches.append(batch)
                try:
                    self._wait_for_room(n, maxsize, timeout, batch, store.batch_room)
                finally:
                    self._drop_batch(batch)
        batches = store.batches
        if batches and batches[0] is not batch:
            batches[0].passed += n

    def _wait_for_room(
        self,
        n: int,
        maxsize: int,
        timeout: float | None,
        batch: _Batch | None,
        condition: threading.Condition,
    ) -> None:
        deadline = Deadline(timeout)
        while True:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise Full
            self._sleep(condition, remaining)
            if self._store.is_shutdown:
                raise ShutDown
            if not self._blocked(n, maxsize, batch):
                return

    def _drop_batch(self, batch: _Batch) -> None:
        batches = self._store.batches
        was_first = bool(batches) and batches[0] is batch
        try:
            batches.remove(batch)
        except ValueError:  # gone already
            return
        if was_first:
            # The room it held is free for everyone, and the next batch starts counting.
            self._room_freed.notify_all()
            self._store.batch_room.notify_all()

    def _room_made(self, n: int) -> None:
        """``n`` items left the queue: wake the puts that may now fit. Lock held."""
        self._room_freed.notify(n)
        if self._store.batches:
            self._store.batch_room.notify_all()

    # -- getting ---------------------------------------------------------------------------

    def get(self, timeout: float | None) -> Any:
        ledger = self._ledger
        with self._lock:
            if ledger.leased:
                self._requeue_lapsed()
            if self._due:
                self._promote()
            if not self._items or self._timing.limited:
                self._wait_for_items(1, timeout)
            item = self._unwrap(self._take()) if ledger.waiting else self._pop()
            self._room_freed.notify()
            if self._store.batches:
                self._store.batch_room.notify_all()
            return item

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        with self._lock:
            if self._ledger.leased:
                self._requeue_lapsed()
            if self._due:
                self._promote()
            if not self._items or self._timing.limited:
                count = self._wait_for_items(n, timeout)
            else:
                count = min(n, len(self._items))
            if self._ledger.waiting:
                take, unwrap = self._take, self._unwrap
                items = [unwrap(take()) for _ in range(count)]
            else:
                pop = self._pop
                items = [pop() for _ in range(count)]
            self._room_made(len(items))
            return items

    def _wait_for_items(self, n: int, timeout: float | None) -> int:
        """Wait until items may be taken (some are waiting, and the limits allow); how many of
        ``n``, counted as taken by the rate limit. Lock held."""
        store = self._store
        timing = self._timing
        deadline: Deadline | None = None
        while True:
            allowed = min(n, len(self._items))
            clock: float | None = None
            if allowed and timing.limited:
                now = time.monotonic()
                allowed, clock = timing.allowance(allowed, len(self._ledger.leased), False, now)
                timing.grant(allowed, now)
            if allowed:
                return allowed
            if store.is_shutdown and not self._items and not self._due:
                raise ShutDown
            if deadline is None:
                if timeout is not None and timeout <= 0:
                    raise Empty
                deadline = Deadline(timeout)
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise Empty
            self._sleep(self._item_added, self._wake_time(remaining, clock))
            if self._ledger.leased:
                self._requeue_lapsed()
            if self._due:
                self._promote()

    def _wake_time(self, wait: float | None, clock: float | None = None) -> float | None:
        """``wait``, cut short to when the earliest lease runs out (its item then comes back),
        the earliest scheduled item comes due, or ``clock`` seconds (a limit) pass."""
        for first in (
            self._ledger.until_next_lapse(),
            self._timing.until_due(time.monotonic()),
            clock,
        ):
            if first is not None:
                wait = first if wait is None else min(wait, first)
        return wait

    # -- elements: items as stored, with a lapsed delivery's token -------------------------

    def _open(self, element: Any) -> tuple[str | None, Any]:
        """The token an element waits under (``None`` if it was never leased) and its item."""
        if self.kind is Kind.PRIORITY:
            waiting_seq = self._ledger.waiting_seq
            return (waiting_seq.get(element[1]) if waiting_seq else None), element[0]
        if type(element) is _Redelivery:
            return element.id, element.item
        return None, element

    def _unwrap(self, element: Any) -> Any:
        """The item of an element taken without a lease; a lapsed delivery's state goes."""
        token, item = self._open(element)
        if token is not None:
            self._ledger.forget(token, element)
        return item

    def _put_back(self, token: str, stored: Any, front: bool) -> None:
        """Put a leased element back in the queue as the lapsed delivery ``token``: where the
        next get takes from (``front``), or where the next put goes."""
        if self.kind is Kind.PRIORITY:
            self._heap.push_entry(stored)
            waiting = stored
        else:
            waiting = _Redelivery(token, stored)
            if front and self.kind is Kind.FIFO:
                self._items.appendleft(waiting)
            else:
                self._items.append(waiting)
        self._ledger.mark(token, waiting)

    def _take_back(self, token: str) -> Any:
        """Take out of the queue the element waiting as delivery ``token``; its stored form,
        else ``GONE``."""
        waiting = self._ledger.waiting.get(token, GONE)
        if waiting is GONE:
            return GONE
        self._ledger.unmark(token, waiting)
        if self.kind is Kind.PRIORITY:
            self._heap.remove(waiting[1])
            return waiting
        self._items.remove(waiting)
        return waiting.item

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> int:
        if self._ledger.leased or self._due:  # a lapsed lease counts as waiting again
            with self._lock:
                self._requeue_lapsed()
                if self._due:
                    self._promote()
        return len(self._items)  # one atomic read; the lock would add nothing

    def task_done(self) -> None:
        with self._lock:
            if self._store.unfinished_tasks <= 0:
                # The standard library's message, word for word: callers may match on it.
                raise ValueError("task_done() called too many times")
            self._finish(1)

    def _finish(self, n: int) -> None:
        """``n`` tasks left the queue for good: count them done. Lock held."""
        store = self._store
        if n and store.unfinished_tasks > 0:
            store.unfinished_tasks = max(0, store.unfinished_tasks - n)
            if store.unfinished_tasks == 0:
                self._tasks_done.notify_all()

    def join(self, timeout: float | None) -> bool:
        deadline = Deadline(timeout)
        with self._lock:
            while self._store.unfinished_tasks:
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    return False
                self._sleep(self._tasks_done, remaining)
            return True

    def unfinished_tasks(self) -> int:
        return self._store.unfinished_tasks

    def shutdown(self, immediate: bool) -> None:
        store = self._store
        with self._lock:
            store.is_shutdown = True
            if immediate:
                # Immediate: the waiting items are dropped, each counted as a finished task.
                dropped = list(self._items)
                store.items.clear()
                if self._ledger.waiting:
                    for element in dropped:
                        self._unwrap(element)
                self._finish(len(dropped) + self._timing.drop_scheduled())
                self._tasks_done.notify_all()
            self._wake_everyone()

    def _wake_everyone(self) -> None:
        store = self._store
        store.item_added.notify_all()
        store.room_freed.notify_all()
        store.batch_room.notify_all()

    def is_shutdown(self) -> bool:
        return self._store.is_shutdown

    # -- leases ----------------------------------------------------------------------------

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        store = self._store
        timing = self._timing
        deadline = Deadline(timeout)
        with self._lock:
            while True:
                self._requeue_lapsed()
                if self._due:
                    self._promote()
                want, clock, now = n, None, 0.0
                if timing.limited:
                    now = time.monotonic()
                    want, clock = timing.allowance(n, len(self._ledger.leased), True, now)
                leases = self._lease_waiting(want, lease_seconds, max_deliveries)
                if leases:
                    timing.grant(len(leases), now)
                    self._room_made(len(leases))
                    return leases
                if store.is_shutdown and not self._items and not self._due:
                    raise ShutDown
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise Empty
                self._sleep(self._item_added, self._wake_time(remaining, clock))

    def _lease_waiting(self, n: int, lease_seconds: float, max_deliveries: int) -> list[Lease]:
        """Lease up to ``n`` waiting items; those past ``max_deliveries`` become dead letters."""
        ledger = self._ledger
        priority = self.kind is Kind.PRIORITY
        leases: list[Lease] = []
        dead = 0
        while self._items and len(leases) < n:
            element = self._take()
            lapsed, item = self._open(element)
            stored = element if priority else item
            lease = ledger.deliver(lapsed, stored, item, lease_seconds, max_deliveries)
            if lease is None:
                dead += 1
            else:
                leases.append(lease)
        self._finish(dead)
        return leases

    def _requeue_lapsed(self) -> None:
        """Put back the items whose lease ran out, each ahead of the items waiting. Lock held."""
        for token, stored in self._ledger.lapsed():
            self._put_back(token, stored, front=True)
            self._item_added.notify()

    def ack(self, ids: Sequence[str]) -> int:
        acked = 0
        with self._lock:
            for token in ids:
                stored = self._release(token)
                if stored is not GONE:
                    self._ledger.forget(token, stored)
                    acked += 1
            self._finish(acked)
            if acked and self._timing.limited:
                self._item_added.notify(acked)  # a consumer held back by the concurrency limit
        return acked

    def _release(self, token: str) -> Any:
        """The element of delivery ``token`` if it is still its holder's: leased (the lease
        ends), or lapsed and waiting, not yet handed out again (it leaves the queue); else
        ``GONE``. Lock held."""
        stored = self._ledger.end(token)
        return self._take_back(token) if stored is GONE else stored

    def nack(self, ids: Sequence[str], delay: float) -> int:
        ledger = self._ledger
        released = 0
        with self._lock:
            for token in ids:
                if delay > 0:
                    if not ledger.renew(token, delay):
                        continue
                    self._item_added.notify()  # a waiter works out again when to wake
                else:
                    stored = ledger.end(token)
                    if stored is GONE:
                        continue
                    self._put_back(token, stored, front=True)
                    self._item_added.notify()
                released += 1
        return released

    def bury(self, ids: Sequence[str], error: str) -> int:
        with self._lock:
            buried = 0
            for token in ids:
                stored = self._release(token)
                if stored is not GONE:
                    self._ledger.bury(token, stored, error)
                    buried += 1
            self._finish(buried)
            if buried and self._timing.limited:
                self._item_added.notify(buried)
            return buried

    def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        with self._lock:
            return sum(self._ledger.renew(token, lease_seconds) for token in ids)

    def in_flight(self) -> int:
        return len(self._ledger.leased)

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._lock:
            if self.kind is Kind.PRIORITY:
                return self._ledger.letters(limit, lambda entry: entry[0])
            return self._ledger.letters(limit, lambda item: item)

    def requeue_dead(self, limit: int) -> int:
        with self._lock:
            raised = self._ledger.raise_dead(limit)
            for token, stored in raised:
                self._put_back(token, stored, front=False)
            self._store.unfinished_tasks += len(raised)
            self._item_added.notify(len(raised))
            return len(raised)

    def purge_dead(self, limit: int) -> int:
        with self._lock:
            return self._ledger.purge(limit)

    def delete(self) -> None:
        # The store is emptied in place and stays registered: every handle on the name, old or
        # new, then uses one fresh queue, as on Redis where the keys are simply gone.
        store = self._store
        with self._lock:
            store.items.clear()
            self._ledger.clear()
            self._timing.clear()
            store.unfinished_tasks = 0
            store.is_shutdown = False
            for batch in store.batches:
                batch.passed = 0
            self._wake_everyone()
            self._tasks_done.notify_all()

    def close(self) -> None:
        """Nothing to release: the store lives as long as a queue object uses it."""


class SimpleMemoryBackend(MemoryBackend):
    """A ``SimpleQueue`` in memory: a FIFO deque, lock-free puts, no task counting.

    ``put`` takes no lock, so a signal handler may run it while its own thread is inside a
    put or get of this very queue: the append is one atomic step, and the wake-up never
    blocks. A sleeping ``get`` waits on ``wakeup``, a lock that a put releases.
    """

    _simple = True

    def __init__(self, name: str) -> None:
        super().__init__(name, Kind.FIFO)

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        # try/except rather than contextlib.suppress: this runs on every put
        try:  # noqa: SIM105
            self._store.wakeup.release()
        except RuntimeError:
            pass  # released already: a wake-up is pending, and one is enough

    def get(self, timeout: float | None) -> Any:
        items = self._items
        try:
            return items.popleft()
        except IndexError:
            pass
        if timeout is not None and timeout <= 0:
            raise Empty
        deadline = Deadline(timeout)
        wakeup = self._store.wakeup
        sleepers = self._store.sleepers
        while True:
            remaining = deadline.remaining()
            if remaining is None or remaining > 0:
                sleepers.append(threading.get_ident())
                try:
                    wakeup.acquire(True, -1 if remaining is None else remaining)
                finally:
                    sleepers.remove(threading.get_ident())
            try:
                item = items.popleft()
            except IndexError:
                if remaining is not None and remaining <= 0:
                    raise Empty from None
                continue
            if items:
                self._wake()  # more are waiting: pass the wake-up on
            return item

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        got = [self.get(timeout)]
        while len(got) < n:
            try:
                got.append(self._items.popleft())
            except IndexError:
                break
        return got
