"""The memory backend's priority heap: Python's order, compared in C wherever it can be.

:class:`PriorityHeap` keeps its items in one list under :mod:`heapq` and moves through three
ways of storing them, never back (until :meth:`PriorityHeap.clear`):

* **bare**: while every item is of one type of :data:`BARE_TYPES`, the items themselves, as
  the standard library stores them. Equal items of these types cannot be told apart, so
  first-in-first-out among equals holds without a sequence number.
* **entries**: ``(item, sequence)`` tuples, for as long as Python orders the items; the
  sequence number (arrival) breaks ties.
* **ordered**: :class:`OrderedEntry` tuples, once a comparison found no order or an item held
  a NaN; those compare by :func:`distqueue.ordering.sort_key` where ``<`` cannot, the key
  Redis sorts by.

A push that raises takes its entry out again before the exception leaves, so a failed put
adds nothing.
"""

from __future__ import annotations

import decimal
import heapq
import itertools
from collections.abc import Sequence
from typing import Any

from ..ordering import sort_key

__all__ = ["BARE_TYPES", "NO_ORDER", "OrderedEntry", "PriorityHeap", "has_nan"]

NO_ORDER = (TypeError, decimal.InvalidOperation)
"""What a comparison raises when Python has no order for two values. Any other exception
belongs to the caller and passes through."""

BARE_TYPES = (int, str, bytes, float)
"""Types whose equal values have nothing to tell them apart. Floats only when
:func:`_bare_ok`: NaN compares false with everything and ``0.0 == -0.0``."""

# The C heapq swaps entries while sifting, so a comparison that raises leaves every entry in
# the list (only the heap order is off, and heapify restores it). The pure-Python fallback
# shifts entries instead and could lose one, so without the C module every heap starts in
# the ordered way, where comparisons never raise for lack of an order.
_C_HEAPQ = heapq.heappush.__module__ == "_heapq"

_heappush = heapq.heappush  # bound once: every put and get of a priority queue calls them
_heappop = heapq.heappop


def _bare_ok(item: Any) -> bool:
    return type(item) is not float or (item == item and item != 0.0)


def has_nan(item: Any, depth: int = 0) -> bool:
    """Whether ``item`` is a float NaN or holds one in its tuples and lists.

    Python compares such values without raising but inconsistently, so the heap looks for them
    itself. A ``Decimal`` NaN needs no search: comparing one raises.
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
            elif (kind is tuple or kind is list) and has_nan(element, depth + 1):
                return True
    return False


class OrderedEntry(tuple):  # type: ignore[type-arg]
    """A heap entry ``(item, sequence, has_nan)`` whose ``<`` never raises for lack of an order.

    Python's ``<`` decides where it gives an answer; otherwise the items' sort keys do. Equal
    items go by sequence number, that is by arrival.
    """

    __slots__ = ()

    @classmethod
    def of(cls, entry: tuple[Any, ...]) -> OrderedEntry:
        item = entry[0]
        return cls((item, entry[1], has_nan(item)))

    def __lt__(self, other: tuple[Any, ...]) -> bool:
        a, b = self[0], other[0]
        if not (self[2] or other[2]):
            try:
                if a < b:
                    return True
                if b < a:
                    return False
                return bool(self[1] < other[1])
            except NO_ORDER:
                pass
        key_a, key_b = sort_key(a), sort_key(b)
        if key_a != key_b:
            return key_a < key_b
        return bool(self[1] < other[1])


class PriorityHeap:
    """The items of one priority queue, lowest first.

    ``heap`` is the list itself (its length is the number of items); ``bare`` is the one type
    of the items while they are stored bare, else ``None``. Lease bookkeeping needs to know
    each item's sequence number, so :meth:`take` and :meth:`push_entry` leave the bare way.
    """

    __slots__ = ("bare", "counter", "heap", "ordered")

    def __init__(self) -> None:
        self.heap: list[Any] = []
        self.counter = itertools.count()
        self.bare: type | None = None
        self.ordered = not _C_HEAPQ

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, item: Any) -> None:
        """Add ``item``; if that raises, the heap is as it was."""
        bare = self.bare
        # The common case first, _bare_ok written out: this line runs on every put.
        if bare is type(item) and (bare is not float or (item == item and item != 0.0)):
            _heappush(self.heap, item)
        elif not self.heap and not self.ordered and type(item) in BARE_TYPES and _bare_ok(item):
            self.bare = type(item)
            _heappush(self.heap, item)
        else:
            self.push_entry((item, next(self.counter)))

    def push_all(self, items: Sequence[Any]) -> None:
        """Add every item, or (when one raises) none of them."""
        bare = self.bare
        if bare is not None and all(type(item) is bare and _bare_ok(item) for item in items):
            heap = self.heap
            for item in items:
                _heappush(heap, item)
            return
        pushed: set[int] = set()
        try:
            for item in items:
                seq = next(self.counter)
                self.push_entry((item, seq))
                pushed.add(seq)
        except BaseException:
            self._discard(pushed)
            raise

    def push_entry(self, entry: tuple[Any, ...]) -> None:
        """Add an entry ``(item, sequence, ...)``, as :meth:`take` returned it or new."""
        if self.bare is not None:
            self._make_entries()
        try:
            if not self.ordered and has_nan(entry[0]):
                self._make_ordered()
            if self.ordered:
                _heappush(self.heap, OrderedEntry.of(entry))
                return
            try:
                _heappush(self.heap, entry)
            except NO_ORDER:  # the entry is in the list already, out of heap order
                self._make_ordered()
        except BaseException:
            self._discard({entry[1]})
            raise

    def pop(self) -> Any:
        """Remove and return the lowest item."""
        if self.bare is not None:
            return _heappop(self.heap)
        return self._pop_top()[0]

    def take(self) -> tuple[Any, ...]:
        """Remove and return the lowest entry ``(item, sequence, ...)``."""
        if self.bare is not None:
            self._make_entries()
        return self._pop_top()

    def remove(self, seq: int) -> None:
        """Remove the entry with sequence number ``seq``."""
        self._discard({seq})

    def clear(self) -> None:
        """Remove everything; the heap starts again in the bare way."""
        self.heap.clear()
        self.bare = None
        self.ordered = not _C_HEAPQ

    def _pop_top(self) -> tuple[Any, ...]:
        heap = self.heap
        top: tuple[Any, ...] = heap[0]
        try:
            _heappop(heap)
        except NO_ORDER:  # every entry but ``top`` is still in the list
            self._make_ordered()
        except BaseException:  # the caller's exception: ``top`` goes back, nothing is lost
            heap.append(top)
            heapq.heapify(heap)
            raise
        return top

    def _discard(self, seqs: set[int]) -> None:
        """Take out the entries with these sequence numbers, keeping the heap order."""
        if not seqs:
            return
        heap = self.heap
        heap[:] = [entry for entry in heap if entry[1] not in seqs]
        heapq.heapify(heap)

    def _make_entries(self) -> None:
        # In list order a parent comes before its children, so sequence numbers given in that
        # order keep the heap valid; equal bare items could not be told apart anyway.
        counter = self.counter
        self.heap[:] = [(item, next(counter)) for item in self.heap]
        self.bare = None
        if self.ordered:
            self._make_ordered()

    def _make_ordered(self) -> None:
        self.heap[:] = [OrderedEntry.of(entry) for entry in self.heap]
        self.ordered = True
        heapq.heapify(self.heap)
