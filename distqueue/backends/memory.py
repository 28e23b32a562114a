"""The in-process backend: a deque, list or heap guarded by one lock per queue.

Items are passed by reference, exactly as with the standard library. Queue objects in one
process that use the same name share one store; different processes never share anything.
This backend is both a product (the default) and the reference the other backends are tested
against.

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

import decimal
import heapq
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import Empty, Full, ShutDown
from ..ordering import sort_key
from .base import DeadLetter, Deadline, Kind, Lease

_registry: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class _Batch:
    """A ``put_many`` waiting for room: its size and how many items other puts added since
    it became the first waiting batch."""

    __slots__ = ("n", "passed")

    def __init__(self, n: int) -> None:
        self.n = n
        self.passed = 0


class _Store:
    """The shared state of one in-memory queue."""

    def __init__(self, kind: Kind, simple: bool) -> None:
        self.kind = kind
        self.simple = simple
        # One lock guards the whole store. Each kind of waiter sleeps on its own condition
        # over that lock, so that a wake-up reaches a thread that can use it:
        lock = self.lock = threading.Lock()
        self.item_added = threading.Condition(lock)  # consumers of an empty queue
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


# -- the priority heap -------------------------------------------------------------------------

# A comparison that raises one of these means Python has no order for the two values; the heap
# then orders them by their sort keys, as Redis does. Any other exception is the caller's.
_NO_ORDER = (TypeError, decimal.InvalidOperation)


def _has_nan(item: Any, depth: int = 0) -> bool:
    """Whether ``item`` is a float NaN or holds one in its tuples and lists.

    Python compares such values without raising, but inconsistently, so the heap has to
    notice them itself. A ``Decimal`` NaN needs no search: comparing it raises.
    """
    kind = type(item)
    if kind is float:
        return bool(item != item)
    if (kind is tuple or kind is list) and depth < 100:
        for element in item:
            kind = type(element)
            if kind is float:
                if element != element:
                    return True
            elif (kind is tuple or kind is list) and _has_nan(element, depth + 1):
                return True
    return False


class _Ordered(tuple):  # type: ignore[type-arg]
    """A heap entry ``(item, sequence, has_nan)`` whose comparison never raises for lack of an
    order: Python's ``<`` where it gives one, else the items' sort keys; the sequence number
    (arrival) breaks ties."""

    __slots__ = ()

    @classmethod
    def of(cls, entry: tuple[Any, ...]) -> _Ordered:
        item = entry[0]
        return cls((item, entry[1], _has_nan(item)))

    def __lt__(self, other: tuple[Any, ...]) -> bool:
        a, b = self[0], other[0]
        if not (self[2] or other[2]):
            try:
                if a < b:
                    return True
                if b < a:
                    return False
                return bool(self[1] < other[1])
            except _NO_ORDER:
                pass
        key_a, key_b = sort_key(a), sort_key(b)
        if key_a != key_b:
            return key_a < key_b
        return bool(self[1] < other[1])


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
    * entries: ``(item, sequence)`` tuples, for as long as Python orders the items;
    * ordered: :class:`_Ordered` entries, once a comparison found no order or an item held
      a NaN.

    A heap only moves down that list (until it is cleared). Lease bookkeeping needs entries
    (``take``). A push that raises takes its entry out again before the exception leaves.
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
        self.push_entry((item, next(self.counter)))

    def push_all(self, items: Sequence[Any]) -> None:
        """Push every item, or (when one raises) none of them."""
        bare = self.bare
        if bare is not None and all(type(item) is bare and _bare_ok(item) for item in items):
            heap = self.heap
            for item in items:
                heapq.heappush(heap, item)
            return
        counter = self.counter
        pushed: set[int] = set()
        try:
            for item in items:
                seq = next(counter)
                self.push_entry((item, seq))
                pushed.add(seq)
        except BaseException:
            self._discard(pushed)
            raise

    def push_entry(self, entry: tuple[Any, ...]) -> None:
        if self.bare is not None:
            self._make_entries()
        try:
            if not self.ordered and _has_nan(entry[0]):
                self._make_ordered()
            if self.ordered:
                heapq.heappush(self.heap, _Ordered.of(entry))
                return
            try:
                heapq.heappush(self.heap, entry)
            except _NO_ORDER:  # the entry is in the list already, out of heap order
                self._make_ordered()
        except BaseException:
            self._discard({entry[1]})
            raise

    def take(self) -> tuple[Any, ...]:
        """The lowest entry ``(item, sequence, ...)``."""
        if self.bare is not None:
            self._make_entries()
        heap = self.heap
        top: tuple[Any, ...] = heap[0]
        self._pop_top()
        return top

    def pop(self) -> Any:
        """The lowest item."""
        heap = self.heap
        if self.bare is not None:
            return heapq.heappop(heap)
        top = heap[0]
        self._pop_top()
        return top[0]

    def _pop_top(self) -> None:
        heap = self.heap
        top = heap[0]
        try:
            heapq.heappop(heap)
        except _NO_ORDER:  # every entry but ``top`` is still in the list
            self._make_ordered()
        except BaseException:  # the caller's exception: ``top`` goes back, nothing is lost
            heap.append(top)
            heapq.heapify(heap)
            raise

    def clear(self) -> None:
        self.heap.clear()
        self.bare = None
        self.ordered = not _C_HEAPQ

    def remove(self, seq: int) -> None:
        self._discard({seq})

    def _discard(self, seqs: set[int]) -> None:
        """Take the entries with these sequence numbers out, keeping the heap order."""
        if not seqs:
            return
        heap = self.heap
        heap[:] = [entry for entry in heap if entry[1] not in seqs]
        heapq.heapify(heap)

    def _make_entries(self) -> None:
        # In array order a parent comes before its children, so sequence numbers given in that
        # order keep the heap valid; equal bare items could not be told apart anyway.
        counter = self.counter
        self.heap[:] = [(item, next(counter)) for item in self.heap]
        self.bare = None
        if self.ordered:
            self._make_ordered()

    def _make_ordered(self) -> None:
        self.heap[:] = [_Ordered.of(entry) for entry in self.heap]
        self.ordered = True
        heapq.heapify(self.heap)


class MemoryBackend:
    """In-process storage for one queue; see :class:`distqueue.backends.base.QueueBackend`.

    ``simple`` opens the store of a ``SimpleQueue``: lock-free puts, no task counting. A name
    is either a ``SimpleQueue`` or a queue of one ``kind`` in a process, never both.
    """

    shared = False
    copies_items = False

    def __init__(self, name: str, kind: Kind, *, simple: bool = False) -> None:
        self.name = name
        self.kind = kind
        store = self._store = _store_for(name, kind, simple)
        # _items: what holds the items, for len() and truth in C (the heap's list for priority)
        self._items = store.items.heap if kind is Kind.PRIORITY else store.items
        self._heap: _PriorityHeap = store.items if kind is Kind.PRIORITY else None  # type: ignore[assignment]
        self._lock = store.lock
        self._item_added = store.item_added
        self._room_freed = store.room_freed
        self._tasks_done = store.tasks_done
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
        if simple:
            self.put = self._put_simple  # type: ignore[method-assign]
            self.get = self._get_simple  # type: ignore[method-assign]

    # -- putting ---------------------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        store = self._store
        with self._lock:
            if store.is_shutdown:
                raise ShutDown
            if maxsize > 0 and (len(self._items) >= maxsize or store.batches):
                self._make_room(1, maxsize, timeout, None)
            self._push(item)
            store.unfinished_tasks += 1
            self._item_added.notify()

    def _put_priority(self, item: Any, maxsize: int, timeout: float | None) -> None:
        # put() for a priority queue, with the heap's commonest case inlined (see __init__)
        store = self._store
        heap = self._heap
        with self._lock:
            if store.is_shutdown:
                raise ShutDown
            if maxsize > 0 and (len(self._items) >= maxsize or store.batches):
                self._make_room(1, maxsize, timeout, None)
            if heap.bare is type(item) and (
                heap.bare is not float or (item == item and item != 0.0)
            ):
                _heappush(self._items, item)
            else:
                heap.push(item)  # raises only after taking the item out again
            store.unfinished_tasks += 1
            self._item_added.notify()

    def _put_simple(self, item: Any, maxsize: int, timeout: float | None) -> None:
        # No lock: a signal handler may run this while its own thread is inside a put or get
        # of this very queue. The append is one atomic step; the wake-up never blocks.
        self._items.append(item)
        self._wake_simple()

    def _wake_simple(self) -> None:
        # try/except rather than contextlib.suppress: this is every SimpleQueue put
        try:  # noqa: SIM105
            self._store.wakeup.release()
        except RuntimeError:
            pass  # already released: a wake-up is pending, and one is enough

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        store = self._store
        with self._lock:
            if store.is_shutdown:
                raise ShutDown
            if maxsize > 0 and (len(self._items) + len(items) > maxsize or store.batches):
                self._make_room(len(items), maxsize, timeout, _Batch(len(items)))
            if self.kind is Kind.PRIORITY:
                self._heap.push_all(items)
            else:
                self._items.extend(items)
            store.unfinished_tasks += len(items)
            self._item_added.notify(len(items))

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
            condition.wait(remaining)
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

    def _get_priority(self, timeout: float | None) -> Any:
        # get() for a priority queue, with the heap's commonest case inlined (see __init__)
        with self._lock:
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
            self._room_freed.notify()
            if self._store.batches:
                self._store.batch_room.notify_all()
            return item

    def get(self, timeout: float | None) -> Any:
        with self._lock:
            if self._store.leased:
                self._requeue_expired()
            if not self._items:
                self._wait_for_item(timeout)
            item = self._unwrap(self._take()) if self._store.redelivered else self._pop()
            self._room_freed.notify()
            if self._store.batches:
                self._store.batch_room.notify_all()
            return item

    def _get_simple(self, timeout: float | None) -> Any:
        items = self._items
        try:
            return items.popleft()
        except IndexError:
            pass
        if timeout is not None and timeout <= 0:
            raise Empty
        deadline = Deadline(timeout)
        wakeup = self._store.wakeup
        while True:
            remaining = deadline.remaining()
            if remaining is None:
                wakeup.acquire()
            elif remaining > 0:
                wakeup.acquire(True, remaining)
            try:
                item = items.popleft()
            except IndexError:
                if remaining is not None and remaining <= 0:
                    raise Empty from None
                continue
            if items:
                self._wake_simple()  # more are waiting: hand the wake-up on
            return item

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        if self._store.simple:
            got = [self._get_simple(timeout)]
            while len(got) < n:
                try:
                    got.append(self._items.popleft())
                except IndexError:
                    break
            return got
        with self._lock:
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
            self._room_made(len(items))
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
            self._item_added.wait(self._until_lease_ends(remaining))
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
        if self._store.leased:  # a lapsed lease counts as waiting again
            with self._lock:
                self._requeue_expired()
        return len(self._items)  # one atomic read; the lock would add nothing

    def task_done(self) -> None:
        store = self._store
        with self._lock:
            if store.unfinished_tasks <= 0:
                raise ValueError("task_done() called too many times")
            self._finish(1)

    def join(self, timeout: float | None) -> bool:
        deadline = Deadline(timeout)
        with self._lock:
            while self._store.unfinished_tasks:
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    return False
                self._tasks_done.wait(remaining)
            return True

    def unfinished_tasks(self) -> int:
        return self._store.unfinished_tasks

    def shutdown(self, immediate: bool) -> None:
        store = self._store
        with self._lock:
            store.is_shutdown = True
            if immediate:
                # Every waiting item is dropped and counts as a finished task.
                dropped = list(self._items)
                store.items.clear()
                if store.redelivered:
                    for element in dropped:
                        self._unwrap(element)
                self._finish(len(dropped))
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
        deadline = Deadline(timeout)
        with self._item_added:
            while True:
                self._requeue_expired()
                leases = self._lease_available(n, lease_seconds, max_deliveries)
                if leases:
                    self._room_made(len(leases))
                    return leases
                if store.is_shutdown:
                    raise ShutDown
                remaining = deadline.remaining()
                if remaining is not None and remaining <= 0:
                    raise Empty
                self._item_added.wait(self._until_lease_ends(remaining))

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
        self._item_added.notify()

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
                self._tasks_done.notify_all()

    def ack(self, ids: Sequence[str]) -> int:
        acked = 0
        with self._lock:
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
        with self._lock:
            for lease_id in ids:
                held = store.leased.get(lease_id)
                if held is None:
                    continue
                released += 1
                if delay > 0:
                    store.leased[lease_id] = (held[0], time.monotonic() + delay)
                    self._item_added.notify()  # a waiter recomputes when to wake
                else:
                    del store.leased[lease_id]
                    self._push_next(lease_id, held[0])
        return released

    def bury(self, ids: Sequence[str], error: str) -> int:
        store = self._store
        with self._lock:
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
        with self._lock:
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
        with self._lock:
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
        with self._lock:
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
            self._item_added.notify(requeued)
            return requeued

    def purge_dead(self, limit: int) -> int:
        store = self._store
        with self._lock:
            purged = 0
            while store.dead and purged < limit:
                item_id, stored, _ = store.dead.popleft()
                self._forget(f"{item_id}:0", stored)
                purged += 1
            return purged

    def delete(self) -> None:
        # The store is emptied in place and stays registered: every handle on the name, old or
        # new, then uses one fresh queue, as on Redis where the keys are simply gone.
        store = self._store
        with self._lock:
            store.items.clear()
            store.leased.clear()
            store.redelivered.clear()
            store.deliveries.clear()
            store.dead.clear()
            store.lease_of_seq.clear()
            store.unfinished_tasks = 0
            store.is_shutdown = False
            for batch in store.batches:
                batch.passed = 0
            self._wake_everyone()
            self._tasks_done.notify_all()

    def close(self) -> None:
        """Nothing to release: the store lives as long as a queue object uses it."""
