"""Deque: ``collections.deque``'s API and semantics, in memory or shared through Redis.

With no URL a :class:`Deque` lives in this process and behaves as ``collections.deque`` does;
with a Redis URL the same name is the same deque for every process on every machine, and every
call is one atomic step on the server. Beyond ``collections.deque``, :meth:`Deque.pop` and
:meth:`Deque.popleft` can wait for an item, so that a deque can serve as a work-stealing
queue: owners take work from one end, thieves from the other.

The storage lives in :mod:`distqueue.deques`; this module checks arguments and keeps
``collections.deque``'s rules.
"""

from __future__ import annotations

import copy
import operator
import reprlib
import sys
import types
from collections.abc import Callable, Iterable, Iterator, MutableSequence
from typing import Any, Generic, TypeVar

from .deques.base import DequeStore
from .queue import _wait_for
from .serializers import Serializer, get_serializer
from .url import open_deque_store, resolve_url

T = TypeVar("T")
_D = TypeVar("_D", bound="Deque[Any]")

__all__ = ["Deque"]


def _index(value: Any) -> int:
    """An index as ``collections.deque`` takes one: anything with ``__index__``."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"sequence index must be integer, not '{type(value).__name__}'") from None


def _fit(n: int) -> int:
    """``n``, if ``collections.deque`` takes it as a count or position (a C ``ssize_t``);
    ``OverflowError`` otherwise."""
    if not -sys.maxsize - 1 <= n <= sys.maxsize:
        raise OverflowError(f"{n} is too large for a deque position or count")
    return n


def _bound(value: Any) -> int:
    """A bound of :meth:`Deque.index`'s range, taken as a slice's bound is."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError("slice indices must be integers or have an __index__ method") from None


def _maxlen(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int):
        raise TypeError(f"maxlen must be an int or None, not {type(value).__name__}")
    if value < 0:
        raise ValueError("maxlen must be non-negative")
    return int(value)


def _reopen(kwargs: dict[str, Any]) -> Deque[Any]:
    return Deque(**kwargs)


class Deque(Generic[T]):
    """A double-ended queue with ``collections.deque``'s API and semantics.

    ``iterable``: items to append, left to right. ``maxlen``: ``None`` for an unbounded deque,
    else the most items it holds; adding to a full deque drops as many items from the other
    end. ``url`` chooses the storage: ``None`` (``$DISTQUEUE_URL`` if set, else memory),
    ``memory://``, or a Redis URL of any form queues take (``redis://``, ``rediss://``,
    ``unix://``, ``redis+cluster://``, ``redis+sentinel://``). ``name`` identifies the deque:
    handles with the same name share it (in one process for memory, everywhere for Redis). A
    memory deque without a name is private to its handle; a Redis deque without one gets a
    fresh random name (:attr:`name`). ``iterable`` is appended to the deque the name holds,
    whatever it holds already. ``serializer`` encodes items on Redis as for queues (``None``:
    the JSON default; ``"pickle"`` only when asked for); memory keeps the objects themselves.

    A deque's maxlen is part of it: every handle on one name must give the same one (on
    Redis it is recorded on the server by the first). Raises ``ValueError`` when the name
    already holds a deque with another maxlen, for a negative maxlen, a malformed or unknown
    URL, an empty name or an unknown serializer; ``TypeError`` for a maxlen that is not an int;
    ``SerializationError`` for an item the serializer cannot encode (nothing is added then);
    ``WrongTypeError`` when a key of the deque holds another type;
    ``BackendConnectionError`` when the server cannot be reached.

    **On Redis** every call is one atomic step on the server. Differences from
    ``collections.deque``, all of them consequences of sharing:

    * items come back as copies made by the serializer;
    * ``count``, ``index``, ``remove`` and ``in`` compare the serialized forms on the server:
      two items are equal when they serialize to the same bytes (so, with the JSON default,
      ``1``, ``1.0`` and ``True`` are three different items);
    * iterating (``list(d)`` too) reads the list in pages of 500 items: a longer deque is
      not read as a snapshot, and while others change it an iteration may show an item twice
      or miss one (it never raises ``RuntimeError``); ``repr``, ``==`` and the other
      comparisons, ``copy``, ``+`` and ``*`` read the whole list in one step;
    * ``extend`` and the initial items are added in one step, all or none;
    * an item the serializer cannot decode raises ``DeserializationError`` carrying the
      stored bytes (``payload``); a pop has taken it off the deque by then.

    In memory, iterating walks a snapshot taken when it starts.

    Every call on Redis can raise ``BackendConnectionError`` when the server cannot be reached
    within the URL's limits, or ``OutcomeUnknownError`` when a change got no answer and may or
    may not have happened; ``WrongTypeError`` when a key of the deque holds another type.
    """

    __slots__ = ("__weakref__", "_backend", "_serializer_spec", "name", "serializer", "url")

    def __init__(
        self,
        iterable: Iterable[T] = (),
        maxlen: int | None = None,
        *,
        url: str | None = None,
        name: str | None = None,
        serializer: Serializer | str | None = None,
    ) -> None:
        maxlen = _maxlen(maxlen)
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"deque name must be a non-empty str, not {name!r}")
        self.url: str = resolve_url(url)
        self._serializer_spec = serializer
        self.serializer: Serializer = get_serializer(serializer)
        items = list(iterable)
        backend, found_name = open_deque_store(self.url, name, maxlen, self.serializer)
        self._start(backend, found_name, items)

    def _start(self, backend: DequeStore, name: str | None, items: list[Any]) -> None:
        self._backend: DequeStore = backend
        self.name: str | None = name
        try:
            backend.push(items, left=False)  # on Redis, also checks the maxlen
        except BaseException:
            backend.close()
            raise

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]
    __hash__ = None  # type: ignore[assignment]

    @property
    def maxlen(self) -> int | None:
        """The most items the deque holds, or ``None`` when it is unbounded. Read-only."""
        return self._backend.maxlen

    # -- adding ------------------------------------------------------------------------------

    def append(self, x: T) -> None:
        """Add ``x`` at the right end; a full deque drops its leftmost item."""
        self._backend.push([x], left=False)

    def appendleft(self, x: T) -> None:
        """Add ``x`` at the left end; a full deque drops its rightmost item."""
        self._backend.push([x], left=True)

    def extend(self, iterable: Iterable[T]) -> None:
        """Append the items of ``iterable`` one after the other at the right end (read first,
        so a deque may extend itself), as one step."""
        self._backend.push(list(iterable), left=False)

    def extendleft(self, iterable: Iterable[T]) -> None:
        """Append the items of ``iterable`` one after the other at the left end, so they end up
        in reverse order, as one step."""
        self._backend.push(list(iterable), left=True)

    def insert(self, i: int, x: T) -> None:
        """Insert ``x`` before index ``i`` (past either end: at that end).

        Raises ``IndexError`` when the deque already holds ``maxlen`` items.
        """
        self._backend.insert(_fit(operator.index(i)), x)

    # -- taking ------------------------------------------------------------------------------

    def pop(self, *, block: bool = False, timeout: float | None = None) -> T:
        """Remove and return the rightmost item.

        With ``block=False`` (the default, as ``collections.deque``) it never waits. With
        ``block=True`` it waits for an item up to ``timeout`` seconds (``None``: as long as it
        takes; 0: not at all). Raises ``IndexError`` when the deque is empty and the wait, if
        any, has ended; ``ValueError`` for a negative ``timeout`` with ``block=True``.
        """
        return self._backend.pop(False, self._timeout(block, timeout))  # type: ignore[no-any-return]

    def popleft(self, *, block: bool = False, timeout: float | None = None) -> T:
        """Remove and return the leftmost item; waits, raises and takes its arguments as
        :meth:`pop` does."""
        return self._backend.pop(True, self._timeout(block, timeout))  # type: ignore[no-any-return]

    @staticmethod
    def _timeout(block: bool, timeout: float | None) -> float | None:
        return _wait_for(timeout) if block else 0

    def remove(self, value: T) -> None:
        """Remove the leftmost item equal to ``value``; ``ValueError`` when there is none."""
        self._backend.remove(value)

    def clear(self) -> None:
        """Remove every item (the maxlen stays)."""
        self._backend.clear()

    # -- rearranging -------------------------------------------------------------------------

    def rotate(self, n: int = 1) -> None:
        """Move the last ``n`` items to the front (with ``n < 0``, the first ``-n`` to the
        back), as one step."""
        self._backend.rotate(_fit(operator.index(n)))

    def reverse(self) -> None:
        """Reverse the order of the items in place."""
        self._backend.reverse()

    # -- looking -----------------------------------------------------------------------------

    def count(self, x: T) -> int:
        """How many items equal ``x``."""
        return self._backend.count(x)

    def index(self, x: T, start: int = 0, stop: int = sys.maxsize) -> int:
        """The index of the first item equal to ``x`` at index ``start`` or after and before
        ``stop`` (bounds taken as a slice's: negative ones count from the right end).

        Raises ``ValueError`` when there is none.
        """
        return self._backend.index(x, _bound(start), _bound(stop))

    def copy(self) -> Deque[T]:
        """A new deque with the same items and maxlen.

        In memory it is a private deque of this process. On Redis it is a new deque on the
        same server under a fresh random name (its :attr:`name`), which stays there until
        someone calls :meth:`delete` on it; the items are read in one step. The new deque
        shares this one's connections, which stay open until both are closed.
        """
        return self._sibling(self._backend.items())

    __copy__ = copy

    def __deepcopy__(self, memo: dict[int, Any]) -> Deque[T]:
        # On Redis the items are stored serialized, so a copy shares nothing with the original
        # already; in memory the items themselves are copied, as for collections.deque.
        items = self._backend.items()
        if not self._backend.shared:
            items = copy.deepcopy(items, memo)
        return self._sibling(items)

    def _sibling(self, items: list[Any]) -> Deque[T]:
        """A new deque on this one's storage, with its maxlen and serializer, holding
        ``items`` (see :meth:`copy`)."""
        new: Deque[T] = Deque.__new__(Deque)
        new.url = self.url
        new._serializer_spec = self._serializer_spec
        new.serializer = self.serializer
        backend = self._backend.sibling()
        new._start(backend, backend.name, items)
        return new

    # -- the deque's own lifetime ------------------------------------------------------------

    def delete(self) -> None:
        """Remove the deque from its storage, for every handle: its items, and on Redis its
        recorded maxlen. A handle that goes on using the name makes a fresh deque."""
        self._backend.delete()

    def close(self) -> None:
        """Release the deque's connections. The items stay on the server."""
        self._backend.close()

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # A Redis deque sent to another process opens the same deque there.
        if not self._backend.shared:
            raise TypeError(
                "a Deque in memory cannot be sent to another process; give it a redis:// URL"
            )
        kwargs = {
            "maxlen": self.maxlen,
            "url": self.url,
            "name": self.name,
            "serializer": self._serializer_spec,
        }
        return (_reopen, (kwargs,))

    # -- the sequence protocol ---------------------------------------------------------------

    def __len__(self) -> int:
        return self._backend.length()

    def __bool__(self) -> bool:
        return self._backend.length() > 0

    def __iter__(self) -> Iterator[T]:
        return self._backend.iterate(reverse=False)

    def __reversed__(self) -> Iterator[T]:
        return self._backend.iterate(reverse=True)

    def __contains__(self, x: object) -> bool:
        return self._backend.contains(x)

    def __getitem__(self, i: int) -> T:
        """The item at index ``i`` (negative: from the right end); ``IndexError`` when out of
        range. Slices are not taken, as by ``collections.deque``."""
        return self._backend.get(_index(i))  # type: ignore[no-any-return]

    def __setitem__(self, i: int, x: T) -> None:
        self._backend.set(_fit(_index(i)), x)

    def __delitem__(self, i: int) -> None:
        self._backend.delete_at(_fit(_index(i)))

    # -- operators ---------------------------------------------------------------------------

    def __add__(self, other: Deque[T]) -> Deque[T]:
        """A new deque (see :meth:`copy`) with this one's items, then ``other``'s, and this
        one's maxlen. ``other`` must be a :class:`Deque`."""
        if not isinstance(other, Deque):
            return NotImplemented
        return self._sibling(self._backend.items() + other._backend.items())

    def __iadd__(self, other: Iterable[T]) -> Deque[T]:
        self.extend(other)
        return self

    def __mul__(self, n: int) -> Deque[T]:
        """A new deque (see :meth:`copy`) with the items repeated ``n`` times, keeping the
        last ``maxlen`` of them."""
        try:
            times = operator.index(n)
        except TypeError:
            return NotImplemented
        _fit(times)
        result = self.copy()
        result._backend.repeat(times)
        return result

    __rmul__ = __mul__

    def __imul__(self, n: int) -> Deque[T]:
        try:
            times = operator.index(n)
        except TypeError:
            return NotImplemented
        self._backend.repeat(_fit(times))
        return self

    def _compare(self, other: object, op: Callable[[Any, Any], bool]) -> Any:
        if not isinstance(other, Deque):
            return NotImplemented
        return op(self._backend.items(), other._backend.items())

    def __eq__(self, other: object) -> bool:
        return self._compare(other, operator.eq)  # type: ignore[no-any-return]

    def __ne__(self, other: object) -> bool:
        return self._compare(other, operator.ne)  # type: ignore[no-any-return]

    def __lt__(self, other: object) -> bool:
        return self._compare(other, operator.lt)  # type: ignore[no-any-return]

    def __le__(self, other: object) -> bool:
        return self._compare(other, operator.le)  # type: ignore[no-any-return]

    def __gt__(self, other: object) -> bool:
        return self._compare(other, operator.gt)  # type: ignore[no-any-return]

    def __ge__(self, other: object) -> bool:
        return self._compare(other, operator.ge)  # type: ignore[no-any-return]

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        parts = [repr(self._backend.items())]
        if self.maxlen is not None:
            parts.append(f"maxlen={self.maxlen}")
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


MutableSequence.register(Deque)
