"""In-process storage for deques: a ``collections.deque`` under a lock.

Items are kept by reference, as ``collections.deque`` keeps them, and compared with ``==``.
Deques opened with the same name in one process share one store (held while any handle on it
lives); a deque with no name has a store of its own. Blocked pops sleep on a condition that
every addition notifies.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from ..backends.base import Deadline

__all__ = ["MemoryDequeStore"]


class _State:
    """The shared part of one in-memory deque."""

    def __init__(self, maxlen: int | None) -> None:
        self.items: deque[Any] = deque(maxlen=maxlen)
        # Reentrant: comparing items runs their __eq__, which may look at this very deque.
        self.lock = threading.RLock()
        self.added = threading.Condition(self.lock)
        self.sleepers: list[int] = []


_registry: weakref.WeakValueDictionary[str, _State] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def _state_for(name: str | None, maxlen: int | None) -> _State:
    if name is None:
        return _State(maxlen)
    with _registry_lock:
        state = _registry.get(name)
        if state is None:
            state = _registry[name] = _State(maxlen)
        elif state.items.maxlen != maxlen:
            raise ValueError(
                f"deque {name!r} already exists in this process with "
                f"maxlen={state.items.maxlen!r}, not maxlen={maxlen!r}"
            )
        return state


class MemoryDequeStore:
    """One deque in this process; see :class:`distqueue.deques.base.DequeStore`.

    Raises ``ValueError`` when ``name`` is a deque of this process with another maxlen.
    """

    shared = False

    def __init__(self, name: str | None, maxlen: int | None) -> None:
        self.name = name
        self.maxlen = maxlen
        self._state = _state_for(name, maxlen)
        self._items = self._state.items
        self._lock = self._state.lock
        self._added = self._state.added

    @property
    def waiting_threads(self) -> int:
        """How many threads are blocked in a pop of this deque right now, through any handle.
        Read-only: tests read it to know that a thread they started has really blocked."""
        return len(self._state.sleepers)

    def length(self) -> int:
        return len(self._items)

    def push(self, items: Sequence[Any], left: bool) -> None:
        if not items:
            return
        with self._lock:
            if left:
                self._items.extendleft(items)
            else:
                self._items.extend(items)
            self._added.notify(len(items))

    def pop(self, left: bool, timeout: float | None) -> Any:
        items = self._items
        with self._lock:
            if not items and timeout != 0:
                deadline = Deadline(timeout)
                sleepers = self._state.sleepers
                while not items:
                    remaining = deadline.remaining()
                    if remaining is not None and remaining <= 0:
                        break
                    sleepers.append(threading.get_ident())
                    try:
                        self._added.wait(remaining)
                    finally:
                        sleepers.remove(threading.get_ident())
            return items.popleft() if left else items.pop()

    def rotate(self, steps: int) -> None:
        with self._lock:
            self._items.rotate(steps)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def count(self, item: Any) -> int:
        with self._lock:
            return self._items.count(item)

    def contains(self, item: Any) -> bool:
        with self._lock:
            return item in self._items

    def index(self, item: Any, start: int, stop: int) -> int:
        with self._lock:
            return self._items.index(item, start, stop)

    def get(self, index: int) -> Any:
        with self._lock:
            return self._items[index]

    def set(self, index: int, item: Any) -> None:
        with self._lock:
            self._items[index] = item

    def delete_at(self, index: int) -> None:
        with self._lock:
            del self._items[index]

    def insert(self, index: int, item: Any) -> None:
        with self._lock:
            self._items.insert(index, item)
            self._added.notify()

    def remove(self, item: Any) -> None:
        with self._lock:
            self._items.remove(item)

    def reverse(self) -> None:
        with self._lock:
            self._items.reverse()

    def repeat(self, times: int) -> None:
        with self._lock:
            self._items *= times
            self._added.notify(len(self._items))

    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def iterate(self, reverse: bool) -> Iterator[Any]:
        snapshot = self.items()
        return reversed(snapshot) if reverse else iter(snapshot)

    def delete(self) -> None:
        self.clear()

    def sibling(self) -> MemoryDequeStore:
        return MemoryDequeStore(None, self.maxlen)

    def close(self) -> None:
        pass
