"""The in-process backend: a deque, list or heap under one lock, as in CPython's ``queue``.

Items are passed by reference, exactly as with the standard library. Queue objects in one
process that use the same name share one store; different processes never share anything.
This backend is both a product (the default) and the reference the other backends are tested
against.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import Empty, Full, ShutDown
from .base import DeadLetter, Deadline, Kind, Lease

_registry: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class _Store:
    """The shared state of one in-memory queue."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.mutex = threading.Lock()
        self.not_empty = threading.Condition(self.mutex)
        self.not_full = threading.Condition(self.mutex)
        self.all_tasks_done = threading.Condition(self.mutex)
        self.not_full_batch = threading.Condition(self.mutex)  # put_many() waiting for room
        self.batch_waiters = 0
        self.unfinished_tasks = 0
        self.is_shutdown = False
        # For priority: entries are (item, sequence) so that items that compare equal stay
        # first-in-first-out; items Python cannot compare fall back to the sequence as well.
        self.items: Any = _PriorityHeap() if kind is Kind.PRIORITY else deque()
        # Leases. An item gets an id when first leased; each delivery of it gets a token,
        # "id:stamp", never used twice, so that only the holder of the current delivery can
        # settle it. leased: token -> the leased element and its deadline; redelivered:
        # token of the delivery that lapsed -> its element, waiting in the queue again;
        # deliveries: item id -> times delivered; dead letters: (item id, element, error).
        self.leased: dict[str, tuple[Any, float]] = {}
        self.redelivered: dict[str, Any] = {}
        self.deliveries: dict[str, int] = {}
        self.dead: deque[tuple[str, Any, str]] = deque()
        self.lease_ids = itertools.count(1)
        self.lease_of_seq: dict[int, str] = {}  # priority entries waiting again -> token


class _Redelivery:
    """An item back in a FIFO or LIFO queue after its lease ended, with that lease's token."""

    __slots__ = ("id", "item")

    def __init__(self, lease_id: str, item: Any) -> None:
        self.id = lease_id
        self.item = item


_GONE = object()  # what _release() returns for a delivery that is over


def _item_of(token: str) -> str:
    """The item id of a lease token ``"id:stamp"``."""
    return token.partition(":")[0]


def _store_for(name: str, kind: Kind) -> _Store:
    with _registry_lock:
        store = _registry.get(name)
        if store is None:
            store = _Store(kind)
            _registry[name] = store
        elif store.kind is not kind:
            raise ValueError(
                f"queue {name!r} already exists in this process as a {store.kind.value} queue, "
                f"not a {kind.value} queue"
            )
        return store


class _Ordered(tuple):  # type: ignore[type-arg]
    """A heap entry ``(item, sequence)`` that never raises on comparison: it orders by the item
    where Python can compare, and by the sequence (first in, first out) where it cannot."""

    __slots__ = ()

    def __lt__(self, other: tuple[Any, int]) -> bool:
        a, b = self[0], other[0]
        try:
            if a < b:
                return True
            if b < a:
                return False
        except TypeError:
            # The standard library would raise here (two dicts behind one priority, say);
            # distqueue keeps such items first-in-first-out instead, on every backend.
            return _lt_fallback(a, b, self[1], other[1])
        return bool(self[1] < other[1])


def _lt_fallback(a: Any, b: Any, seq_a: int, seq_b: int) -> bool:
    # Tuples compare element by element; find the first pair that differs and is comparable.
    if isinstance(a, (tuple, list)) and type(a) is type(b):
        for x, y in zip(a, b, strict=False):
            try:
                if x == y:
                    continue
                if x < y:
                    return True
                if y < x:
                    return False
            except TypeError:
                return seq_a < seq_b
            # equal-but-not-== (nan) or incomparable: fall back to order of arrival
            return seq_a < seq_b
    return seq_a < seq_b


# The C heapq swaps entries while sifting, so a comparison that raises leaves every entry in
# the list (only the heap order is off, and heapify restores it). The pure-Python fallback
# shifts instead and could lose one, so without the C module every heap starts safe.
_C_HEAPQ = heapq.heappush.__module__ == "_heapq"
_heappush = heapq.heappush  # bound once: the hot paths of the priority queue use them
_heappop = heapq.heappop


# Items of these exact types that compare equal cannot be told apart (no identity, no state
# to tell), so while a heap holds only one of these types it can store them bare, as the
# standard library does, and first-in-first-out among equal items still holds. Floats too,
# except nan (which compares false with everything) and zero (0.0 == -0.0): see _bare_ok.
_BARE_TYPES = (int, str, bytes, float)


def _bare_ok(item: Any) -> bool:
    return type(item) is not float or (item == item and item != 0.0)


class _PriorityHeap:
    """A priority heap compared in C wherever it can be, in three modes:

    * bare: while every item is of one type of ``_BARE_TYPES``, the items themselves;
    * entries: ``(item, sequence)`` tuples, for as long as Python can compare the items;
    * ordered: :class:`_Ordered` entries, after the first comparison that raised.

    A heap only moves down that list. Lease bookkeeping needs entries (``take``).
    """

    def __init__(self) -> None:
        self.heap: list[Any] = []
        self.counter = itertools.count()
        self.bare: type | None = None
        self.ordered = not _C_HEAPQ

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, item: Any) -> None:
        if self.bare is type(item) and _bare_ok(item):
            heapq.heappush(self.heap, item)
            return
        if not self.heap and not self.ordered and type(item) in _BARE_TYPES and _bare_ok(item):
            self.bare = type(item)
            heapq.heappush(self.heap, item)
            return
        if self.bare is not None:
            self._make_entries()
        self.push_entry((item, next(self.counter)))

    def push_entry(self, entry: tuple[Any, int]) -> None:
        if self.bare is not None:
            self._make_entries()
        if self.ordered:
            heapq.heappush(self.heap, _Ordered(entry))
            return
        try:
            heapq.heappush(self.heap, entry)
        except TypeError:  # the entry is in the list already, out of heap order
            self._make_ordered()

    def take(self) -> tuple[Any, int]:
        """The lowest entry ``(item, sequence)``."""
        if self.bare is not None:
            self._make_entries()
        heap = self.heap
        top: tuple[Any, int] = heap[0]
        try:
            heapq.heappop(heap)
        except TypeError:  # every entry but ``top`` is still in the list
            self._make_ordered()
        return top

    def pop(self) -> Any:
        """The lowest item."""
        heap = self.heap
        if self.bare is not None:
            return heapq.heappop(heap)
        top = heap[0]
        try:
            heapq.heappop(heap)
        except TypeError:  # every entry but ``top`` is still in the list
            self._make_ordered()
        return top[0]

    def clear(self) -> None:
        self.heap.clear()
        self.bare = None

    def remove(self, seq: int) -> None:
        heap = self.heap
        for i, entry in enumerate(heap):
            if entry[1] == seq:
                heap[i] = heap[-1]
                heap.pop()
                heapq.heapify(heap)
                return

    def _make_entries(self) -> None:
        # In array order a parent comes before its children, so sequence numbers given in that
        # order keep the heap valid; equal bare items could not be told apart anyway.
        counter = self.counter
        self.heap[:] = [(item, next(counter)) for item in self.heap]
        self.bare = None
        if self.ordered:
            self._make_ordered()

    def _make_ordered(self) -> None:
        self.heap[:] = [_Ordered(entry) for entry in self.heap]
        heapq.heapify(self.heap)
        self.ordered = True


class MemoryBackend:
    """In-process storage for one queue; see :class:`distqueue.backends.base.QueueBackend`."""

    shared = False
    copies_items = False

    def __init__(self, name: str, kind: Kind) -> None:
        self.name = name
        self.kind = kind
        store = self._store = _store_for(name, kind)
        # _items: what holds the items, for len() and truth in C (the heap's list for priority)
        self._items = store.items.heap if kind is Kind.PRIORITY else store.items
        self._heap: _PriorityHeap = store.items if kind is Kind.PRIORITY else None  # type: ignore[assignment]
        self._mutex = store.mutex
        self._not_empty = store.not_empty
        self._not_full = store.not_full
        self._all_tasks_done = store.all_tasks_done
        self._push: Any
        self._pop: Any
        self._take: Any  # pops an element, as stored
        if kind is Kind.FIFO:
            self._push = store.items.append
            self._pop = self._take = store.items.popleft
        elif kind is Kind.LIFO:
            self._push = store.items.append
            self._pop = self._take = store.items.pop
        else:
            self._push = store.items.push
            self._pop = store.items.pop
            self._take = store.items.take
            self.put = self._put_priority  # type: ignore[method-assign]
            self.get = self._get_priority  # type: ignore[method-assign]

    # -- putting ---------------------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        store = self._store
        with self._not_full:
            if store.is_shutdown:
                raise ShutDown
            if maxsize > 0 and len(self._items) >= maxsize:
                self._wait_for_room(1, maxsize, timeout)
            self._push(item)
            store.unfinished_tasks += 1
            self._not_empty.notify()

    def _put_priority(self, item: Any, maxsize: int, timeout: float | None) -> None:
        # put() for a priority queue, with the heap's commonest case inlined (see __init__)
        store = self._store
        heap = self._heap
        with self._not_full:
            if store.is_shutdown:
                raise ShutDown
            if maxsize > 0 and len(self._items) >= maxsize:
                self._wait_for_room(1, maxsize, timeout)
            if heap.bare is type(item) and (
                heap.bare is not float or (item == item and item != 0.0)
            ):
                _heappush(self._items, item)
            else:
                heap.push(item)
            store.unfinished_tasks += 1
            self._not_empty.notify()

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        store = self._store
        with self._not_full:
            if store.is_shutdown:
                raise ShutDown
            if maxsize > 0 and len(self._items) + len(items) > maxsize:
                self._wait_for_room(len(items), maxsize, timeout)
            push = self._push
            for item in items:
                push(item)
            store.unfinished_tasks += len(items)
            self._not_empty.notify(len(items))

    def _wait_for_room(self, n: int, maxsize: int, timeout: float | None) -> None:
        # Called with the lock held and the queue too full for n more items.
        if timeout is not None and timeout <= 0:
            raise Full
        deadline = Deadline(timeout)
        store = self._store
        # A batch waits on a condition of its own, woken at every free slot: on the shared one
        # it could take the only wake-up meant for a smaller put that fits.
        condition = self._not_full if n == 1 else store.not_full_batch
        while len(self._items) + n > maxsize:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise Full
            if n > 1:
                store.batch_waiters += 1
            try:
                condition.wait(remaining)
            finally:
                if n > 1:
                    store.batch_waiters -= 1
            if store.is_shutdown:
                raise ShutDown

    # -- getting ---------------------------------------------------------------------------

    def _get_priority(self, timeout: float | None) -> Any:
        # get() for a priority queue, with the heap's commonest case inlined (see __init__)
        with self._not_empty:
            if self._store.leased:
                self._requeue_expired()
            if not self._items:
                self._wait_for_item(timeout)
            if self._heap.bare is not None:
                item = _heappop(self._items)
            elif self._store.redelivered:
                item = self._unwrap(self._take())
            else:
                item = self._pop()
            self._not_full.notify()
            if self._store.batch_waiters:
                self._store.not_full_batch.notify_all()
            return item

    def get(self, timeout: float | None) -> Any:
        with self._not_empty:
            if self._store.leased:
                self._requeue_expired()
            if not self._items:
                self._wait_for_item(timeout)
            item = self._unwrap(self._take()) if self._store.redelivered else self._pop()
            self._not_full.notify()
            if self._store.batch_waiters:
                self._store.not_full_batch.notify_all()
            return item

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        with self._not_empty:
            if self._store.leased:
                self._requeue_expired()
            if not self._items:
                self._wait_for_item(timeout)
            count = min(n, len(self._items))
            if self._store.redelivered:
                take = self._take
                unwrap = self._unwrap
                items = [unwrap(take()) for _ in range(count)]
            else:
                pop = self._pop
                items = [pop() for _ in range(count)]
            self._not_full.notify(len(items))
            if self._store.batch_waiters:
                self._store.not_full_batch.notify_all()
            return items

    def _unwrap(self, element: Any) -> Any:
        """The item of an element taken without a lease; forgets a redelivery's lease."""
        lease_id, item = self._open(element)
        if lease_id is not None:
            self._forget(lease_id, element)
        return item

    def _forget(self, token: str, stored: Any) -> None:
        """An item leaves for good: forget its lease state (``token``: its last delivery's)."""
        store = self._store
        store.redelivered.pop(token, None)
        store.deliveries.pop(_item_of(token), None)
        if self.kind is Kind.PRIORITY:
            store.lease_of_seq.pop(stored[1], None)

    def _open(self, element: Any) -> tuple[str | None, Any]:
        """The lease id (if it has one) and the item of an element as stored."""
        if self.kind is Kind.PRIORITY:
            lease_of_seq = self._store.lease_of_seq
            return (lease_of_seq.get(element[1]) if lease_of_seq else None), element[0]
        if type(element) is _Redelivery:
            return element.id, element.item
        return None, element

    def _wait_for_item(self, timeout: float | None) -> None:
        # Called with the lock held and the queue empty.
        if self._store.is_shutdown:
            raise ShutDown
        if timeout is not None and timeout <= 0:
            raise Empty
        deadline = Deadline(timeout)
        while not self._items:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise Empty
            self._not_empty.wait(self._until_lease_ends(remaining))
            if self._store.leased:
                self._requeue_expired()
            if self._store.is_shutdown and not self._items:
                raise ShutDown

    def _until_lease_ends(self, wait: float | None) -> float | None:
        """``wait``, shortened to when the earliest lease runs out (its item then comes back)."""
        leased = self._store.leased
        if not leased:
            return wait
        first = max(0.001, min(at for _, at in leased.values()) - time.monotonic())
        return first if wait is None else min(wait, first)

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> int:
        with self._mutex:
            if self._store.leased:
                self._requeue_expired()
            return len(self._items)

    def task_done(self) -> None:
        store = self._store
        with self._all_tasks_done:
            unfinished = store.unfinished_tasks - 1
            if unfinished <= 0:
                if unfinished < 0:
                    raise ValueError("task_done() called too many times")
                self._all_tasks_done.notify_all()
            store.unfinished_tasks = unfinished

    def join(self, timeout: float | None) -> bool:
        deadline = Deadline(timeout)
        with self._all_tasks_done:
            while self._store.unfinished_tasks:
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    return False
                self._all_tasks_done.wait(remaining)
            return True

    def unfinished_tasks(self) -> int:
        return self._store.unfinished_tasks

    def shutdown(self, immediate: bool) -> None:
        store = self._store
        with self._mutex:
            store.is_shutdown = True
            if immediate:
                while self._items:
                    self._unwrap(self._take())
                    if store.unfinished_tasks > 0:
                        store.unfinished_tasks -= 1
                self._all_tasks_done.notify_all()
            self._not_empty.notify_all()
            self._not_full.notify_all()
            store.not_full_batch.notify_all()

    def is_shutdown(self) -> bool:
        return self._store.is_shutdown

    # -- leases ----------------------------------------------------------------------------

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        store = self._store
        deadline = Deadline(timeout)
        with self._not_empty:
            while True:
                self._requeue_expired()
                leases = self._lease_available(n, lease_seconds, max_deliveries)
                if leases:
                    self._not_full.notify(len(leases))
                    if store.batch_waiters:
                        store.not_full_batch.notify_all()
                    return leases
                if store.is_shutdown:
                    raise ShutDown
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise Empty
                self._not_empty.wait(self._until_lease_ends(remaining))

    def _requeue_expired(self) -> None:
        store = self._store
        if not store.leased:
            return
        now = time.monotonic()
        expired = sorted(
            ((at, lease_id) for lease_id, (_, at) in store.leased.items() if at <= now),
            reverse=True,
        )
        for _, token in expired:
            element, _ = store.leased.pop(token)
            self._push_next(token, element)

    def _push_next(self, token: str, element: Any) -> None:
        """Put a leased element back where consumers take the next item from, as the lapsed
        delivery ``token``."""
        store = self._store
        if self.kind is Kind.PRIORITY:
            self._heap.push_entry(element)
            store.lease_of_seq[element[1]] = token
            waiting = element
        else:
            waiting = _Redelivery(token, element)
            if self.kind is Kind.FIFO:
                self._items.appendleft(waiting)
            else:
                self._items.append(waiting)
        store.redelivered[token] = waiting
        self._not_empty.notify()

    def _lease_available(self, n: int, lease_seconds: float, max_deliveries: int) -> list[Lease]:
        store = self._store
        leases: list[Lease] = []
        dead = 0
        while self._items and len(leases) < n:
            element = self._take()
            lapsed, item = self._open(element)
            if lapsed is None:
                item_id = str(next(store.lease_ids))
            else:
                store.redelivered.pop(lapsed, None)
                if self.kind is Kind.PRIORITY:
                    store.lease_of_seq.pop(element[1], None)
                item_id = _item_of(lapsed)
            stored = element if self.kind is Kind.PRIORITY else item
            deliveries = store.deliveries.get(item_id, 0) + 1
            if deliveries > max_deliveries:
                reason = (
                    f"delivered {deliveries - 1} times and never acknowledged "
                    f"(max_deliveries {max_deliveries})"
                )
                store.dead.append((item_id, stored, reason))
                dead += 1
                continue
            store.deliveries[item_id] = deliveries
            token = f"{item_id}:{next(store.lease_ids)}"
            store.leased[token] = (stored, time.monotonic() + lease_seconds)
            leases.append(Lease(token, item, deliveries))
        self._finish(dead)
        return leases

    def _finish(self, n: int) -> None:
        """``n`` tasks left the queue for good. Called with the lock held."""
        store = self._store
        if n and store.unfinished_tasks > 0:
            store.unfinished_tasks = max(0, store.unfinished_tasks - n)
            if store.unfinished_tasks == 0:
                self._all_tasks_done.notify_all()

    def ack(self, ids: Sequence[str]) -> int:
        acked = 0
        with self._mutex:
            for token in ids:
                stored = self._release(token)
                if stored is not _GONE:
                    self._forget(token, stored)
                    acked += 1
            self._finish(acked)
        return acked

    def _release(self, token: str) -> Any:
        """The element of delivery ``token`` if it is still its holder's: leased (the lease
        ends), or lapsed and waiting, not yet handed out again (it leaves the queue);
        else ``_GONE``. Called with the lock held."""
        store = self._store
        held = store.leased.pop(token, None)
        if held is not None:
            return held[0]
        waiting = store.redelivered.pop(token, None)
        if waiting is None:
            return _GONE
        if self.kind is Kind.PRIORITY:
            self._heap.remove(waiting[1])
            store.lease_of_seq.pop(waiting[1], None)
            return waiting
        self._items.remove(waiting)
        return waiting.item

    def nack(self, ids: Sequence[str], delay: float) -> int:
        store = self._store
        released = 0
        with self._mutex:
            for lease_id in ids:
                held = store.leased.get(lease_id)
                if held is None:
                    continue
                released += 1
                if delay > 0:
                    store.leased[lease_id] = (held[0], time.monotonic() + delay)
                    self._not_empty.notify()  # a waiter recomputes when to wake
                else:
                    del store.leased[lease_id]
                    self._push_next(lease_id, held[0])
        return released

    def bury(self, ids: Sequence[str], error: str) -> int:
        store = self._store
        with self._mutex:
            buried = 0
            for token in ids:
                stored = self._release(token)
                if stored is not _GONE:
                    store.dead.append((_item_of(token), stored, error))
                    buried += 1
            self._finish(buried)
            return buried

    def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        store = self._store
        extended = 0
        with self._mutex:
            deadline = time.monotonic() + lease_seconds
            for lease_id in ids:
                held = store.leased.get(lease_id)
                if held is not None:
                    store.leased[lease_id] = (held[0], deadline)
                    extended += 1
        return extended

    def in_flight(self) -> int:
        return len(self._store.leased)

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._mutex:
            letters = list(itertools.islice(self._store.dead, limit))
            return [
                DeadLetter(
                    id=lease_id,
                    item=stored[0] if self.kind is Kind.PRIORITY else stored,
                    payload=None,
                    deliveries=self._store.deliveries.get(lease_id, 0),
                    error=reason,
                )
                for lease_id, stored, reason in letters
            ]

    def requeue_dead(self, limit: int) -> int:
        store = self._store
        with self._mutex:
            requeued = 0
            while store.dead and requeued < limit:
                item_id, stored, _ = store.dead.popleft()
                store.deliveries[item_id] = 0
                token = f"{item_id}:0"
                if self.kind is Kind.PRIORITY:
                    self._heap.push_entry(stored)
                    store.lease_of_seq[stored[1]] = token
                    store.redelivered[token] = stored
                else:
                    waiting = _Redelivery(token, stored)
                    self._items.append(waiting)
                    store.redelivered[token] = waiting
                requeued += 1
            store.unfinished_tasks += requeued
            self._not_empty.notify(requeued)
            return requeued

    def purge_dead(self, limit: int) -> int:
        store = self._store
        with self._mutex:
            purged = 0
            while store.dead and purged < limit:
                item_id, stored, _ = store.dead.popleft()
                self._forget(f"{item_id}:0", stored)
                purged += 1
            return purged

    def delete(self) -> None:
        with _registry_lock:
            if _registry.get(self.name) is self._store:
                del _registry[self.name]
        store = self._store
        with self._mutex:
            store.is_shutdown = True  # handles still open on the old store see it as gone
            store.items.clear()
            store.leased.clear()
            store.redelivered.clear()
            store.deliveries.clear()
            store.dead.clear()
            store.unfinished_tasks = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()
            store.not_full_batch.notify_all()
            self._all_tasks_done.notify_all()

    def close(self) -> None:
        """Nothing to release: the store lives as long as a queue object uses it."""
