"""The protocol a deque's storage provides to :class:`distqueue.Deque`.

A store serves one deque. Every method is one atomic step: under one lock in memory, one
command or one Lua script on Redis. Indexes reach a store already converted to ``int``; a
store normalizes negative ones itself, in the same atomic step that reads the length. Timeouts
are validated already: ``None`` waits forever, ``0`` never waits, a positive float waits at
most that many seconds. A store raises what ``collections.deque`` raises for the same call
(``IndexError``, ``ValueError``), and only distqueue's exceptions for what goes wrong with its
storage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class DequeStore(Protocol):
    """Storage for one deque.

    ``shared``: whether handles in other processes with the same name see the same items.
    ``name``: the deque's name (``None``: a private deque in memory). ``maxlen``: the bound
    this handle was opened with (``None``: unbounded).
    """

    shared: bool
    name: str | None
    maxlen: int | None

    def length(self) -> int:
        """How many items the deque holds."""

    def push(self, items: Sequence[Any], left: bool) -> None:
        """Add ``items`` one after the other at the left or right end, dropping items from the
        other end beyond ``maxlen``. With no items, only checks that the deque's maxlen is
        this handle's (``ValueError`` if not)."""

    def pop(self, left: bool, timeout: float | None) -> Any:
        """Take the item at the left or right end, waiting up to ``timeout`` for one;
        ``IndexError`` when there is none."""

    def rotate(self, steps: int) -> None:
        """Move the last ``steps`` items to the front (the first ones to the back when
        negative)."""

    def clear(self) -> None:
        """Remove every item."""

    def count(self, item: Any) -> int:
        """How many items equal ``item``."""

    def contains(self, item: Any) -> bool:
        """Whether an item equals ``item``."""

    def index(self, item: Any, start: int, stop: int) -> int:
        """The first index from ``start`` up to ``stop`` (a slice's bounds) of an item equal
        to ``item``; ``ValueError`` when there is none."""

    def get(self, index: int) -> Any:
        """The item at ``index``; ``IndexError`` when out of range."""

    def set(self, index: int, item: Any) -> None:
        """Replace the item at ``index``; ``IndexError`` when out of range."""

    def delete_at(self, index: int) -> None:
        """Remove the item at ``index``; ``IndexError`` when out of range."""

    def insert(self, index: int, item: Any) -> None:
        """Insert ``item`` before ``index`` (clipped to the deque, as ``list.insert``);
        ``IndexError`` when the deque already holds ``maxlen`` items."""

    def remove(self, item: Any) -> None:
        """Remove the first item equal to ``item``; ``ValueError`` when there is none."""

    def reverse(self) -> None:
        """Reverse the items in place."""

    def repeat(self, times: int) -> None:
        """Repeat the items in place ``times`` times (none when ``times <= 0``), keeping the
        last ``maxlen`` when bounded."""

    def items(self) -> list[Any]:
        """Every item, left to right, read in one step (a snapshot)."""

    def iterate(self, reverse: bool) -> Iterator[Any]:
        """The items left to right (right to left when ``reverse``)."""

    def delete(self) -> None:
        """Forget the deque: its items and its maxlen."""

    def sibling(self) -> DequeStore:
        """The store of a new, empty deque with this maxlen on the same storage: a private
        one in memory; on Redis one under a fresh random name, sharing these connections."""

    def close(self) -> None:
        """Release connections (shared ones once their last user is done); the items
        stay."""
