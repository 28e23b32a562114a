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
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..errors import Empty, Full, ShutDown
from .base import Deadline, Kind

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
        self.unfinished_tasks = 0
        self.is_shutdown = False
        self.items: Any = [] if kind is Kind.PRIORITY else deque()
        # For priority: entries are (item, sequence) so that items that compare equal stay
        # first-in-first-out; items Python cannot compare fall back to the sequence as well.
        self.counter = itertools.count()


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


class _PriorityEntry:
    """Heap entry: orders by the item as Python compares it, ties and failures by sequence."""

    __slots__ = ("item", "seq")

    def __init__(self, item: Any, seq: int) -> None:
        self.item = item
        self.seq = seq

    def __lt__(self, other: _PriorityEntry) -> bool:
        try:
            if self.item < other.item:
                return True
            if other.item < self.item:
                return False
        except TypeError:
            # The standard library would raise here (two dicts behind one priority, say);
            # distqueue keeps such items first-in-first-out instead, on every backend.
            return _lt_fallback(self.item, other.item, self.seq, other.seq)
        return self.seq < other.seq


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


class MemoryBackend:
    """In-process storage for one queue; see :class:`distqueue.backends.base.QueueBackend`."""

    shared = False
    copies_items = False

    def __init__(self, name: str, kind: Kind) -> None:
        self.name = name
        self.kind = kind
        store = self._store = _store_for(name, kind)
        self._items = store.items
        self._mutex = store.mutex
        self._not_empty = store.not_empty
        self._not_full = store.not_full
        self._all_tasks_done = store.all_tasks_done
        if kind is Kind.FIFO:
            self._push = store.items.append
            self._pop = store.items.popleft
        elif kind is Kind.LIFO:
            self._push = store.items.append
            self._pop = store.items.pop
        else:
            heap = store.items
            counter = store.counter

            def push(item: Any) -> None:
                heapq.heappush(heap, _PriorityEntry(item, next(counter)))

            def pop() -> Any:
                return heapq.heappop(heap).item

            self._push = push
            self._pop = pop

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
        while len(self._items) + n > maxsize:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise Full
            self._not_full.wait(remaining)
            if self._store.is_shutdown:
                raise ShutDown

    # -- getting ---------------------------------------------------------------------------

    def get(self, timeout: float | None) -> Any:
        with self._not_empty:
            if not self._items:
                self._wait_for_item(timeout)
            item = self._pop()
            self._not_full.notify()
            return item

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        with self._not_empty:
            if not self._items:
                self._wait_for_item(timeout)
            pop = self._pop
            items = [pop() for _ in range(min(n, len(self._items)))]
            self._not_full.notify(len(items))
            return items

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
            self._not_empty.wait(remaining)
            if self._store.is_shutdown and not self._items:
                raise ShutDown

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> int:
        with self._mutex:
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
                    self._pop()
                    if store.unfinished_tasks > 0:
                        store.unfinished_tasks -= 1
                self._all_tasks_done.notify_all()
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def is_shutdown(self) -> bool:
        return self._store.is_shutdown

    def close(self) -> None:
        """Nothing to release: the store lives as long as a queue object uses it."""
