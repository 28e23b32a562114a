"""The contract of a key-value backend: bytes in, bytes out, under keys with a TTL.

A backend stores items (bytes) under keys (bytes, already made safe by :mod:`.keys`) with a TTL
in seconds (``None``: no expiry), and raises only distqueue's exceptions: errors of the client
libraries are translated where they are caught. It knows nothing of serializers, chunks,
namespaces or the failure rules of :class:`~distqueue.cache.Cache` and
:class:`~distqueue.results.ResultStore`; those live above it.

Errors: a server that cannot be reached, or that failed within the last ``dead_retry`` seconds,
raises ``BackendConnectionError`` at once; a command the server refused raises
``BackendError``; ``incr``/``decr`` on an item that is not a counter raise ``WrongTypeError``.
Calls on several keys (``get_many``, ``set_many``, ``delete_many``) go on with the servers
that work and return a :class:`Failure` for each server that did not, so that the caller
decides what a partial failure means.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from ..errors import BackendConnectionError, BackendError

logger = logging.getLogger("distqueue.cache")

DEFAULT_CONNECT_TIMEOUT = 1.0
"""Seconds to wait for a connection to a cache server."""

DEFAULT_TIMEOUT = 3.0
"""Seconds to wait on each read or write of a socket to a cache server."""

DEFAULT_DEAD_RETRY = 1.0
"""Seconds during which a server that failed is not tried again."""


class Default(enum.Enum):
    """The type of :data:`DEFAULT`."""

    DEFAULT = 0


DEFAULT = Default.DEFAULT
"""Stands for "not given": the owner's ``default_ttl`` for a ``ttl``, the URL's setting or the
built-in value for a timeout."""


class KeepTTL(enum.Enum):
    """The type of :data:`KEEP_TTL`."""

    KEEP_TTL = 0


KEEP_TTL = KeepTTL.KEEP_TTL
"""A ``ttl`` for :meth:`KVBackend.cas` that keeps the item's own TTL, where the server can."""


class CasToken:
    """What :meth:`distqueue.cache.Cache.gets` returns with a value, for a later
    :meth:`~distqueue.cache.Cache.cas` on the same key: opaque, and good for that key only.

    It holds the version of the item that was read, as the backend knows it (memcached's cas
    unique, an item's SHA-1 on Redis, a write counter in memory).
    """

    __slots__ = ("key", "replaces", "stamp")

    def __init__(self, key: bytes, stamp: object, replaces: tuple[bytes, ...] = ()) -> None:
        self.key = key  # the storage key read
        self.stamp = stamp
        self.replaces = replaces  # the chunks of the value read, deleted once it is replaced

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CasToken):
            return NotImplemented
        return (self.key, self.stamp) == (other.key, other.stamp)

    def __hash__(self) -> int:
        return hash((self.key, repr(self.stamp)))

    def __repr__(self) -> str:
        return "<CasToken>"


class Failure(NamedTuple):
    """One server's part of a call on several keys failed."""

    server: str
    keys: list[bytes]
    error: BackendError


class KVBackend(Protocol):
    """Storage of items for :class:`~distqueue.cache.Cache` and
    :class:`~distqueue.results.ResultStore`.

    ``shared``: items are seen by other processes (Redis, memcached), not only this one.
    ``keeps_ttl``: :meth:`cas` takes ``KEEP_TTL`` (memcached cannot tell an item's TTL).
    """

    shared: bool
    keeps_ttl: bool

    def item_size_limit(self) -> int | None:
        """The largest item in bytes, key included (``None``: no limit). May ask the server
        once; falls back to 1 MiB while no server answers."""
        ...

    def memory_limit(self) -> int | None:
        """At most how many bytes the servers hold together (``None``: unknown, or no limit);
        known once :meth:`item_size_limit` has heard from a server."""
        ...

    def get(self, key: bytes) -> bytes | None:
        """The item under ``key``, ``None`` if there is none."""
        ...

    def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        """The items found under ``keys``, and the failed servers' keys."""
        ...

    def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        """Store ``item`` under ``key``."""
        ...

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        """Store every item; return the failed servers' keys (not stored, or maybe stored)."""
        ...

    def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        """Store ``item`` only if ``key`` holds nothing; ``True`` if it was stored."""
        ...

    def replace(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        """Store ``item`` only if ``key`` holds an item; ``True`` if it was stored."""
        ...

    def gets(self, key: bytes) -> tuple[bytes | None, object | None]:
        """The item under ``key`` and its version (``(None, None)`` if there is none): an
        opaque stamp for :meth:`cas`."""
        ...

    def cas(self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object) -> bool:
        """Store ``item`` only if ``key`` still holds the item that :meth:`gets` read with
        ``stamp``; ``True`` if it was stored. ``KEEP_TTL`` keeps the item's TTL where the
        server can tell it (Redis, memory); memcached cannot, and stores it with no expiry:
        callers give it a number there. Never stores twice: a call whose outcome is unknown
        raises ``OutcomeUnknownError``."""
        ...

    def append(self, key: bytes, data: bytes, prepend: bool) -> bool | None:
        """Add ``data`` at the end (or start) of the bytes value of a plain ``b`` item (see
        :mod:`.frames`), keeping its TTL: ``True`` if done, ``False`` if ``key`` holds nothing,
        ``None`` (nothing changed) if the item is not such an item or the backend has no
        such command (the caller then reads the value and uses :meth:`cas`). Never adds twice,
        as :meth:`cas`."""
        ...

    def delete(self, key: bytes) -> bool:
        """Remove the item under ``key``; ``True`` if there was one."""
        ...

    def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        """Remove the items under ``keys``; return the failed servers' keys."""
        ...

    def touch(self, key: bytes, ttl: float | None) -> bool:
        """Give the item under ``key`` a new TTL; ``True`` if there was one."""
        ...

    def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        """Add ``delta`` to the counter under ``key`` and return it. A missing counter is
        created holding ``delta``, with ``ttl``."""
        ...

    def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        """Subtract ``delta`` from the counter under ``key``, stopping at 0, and return it. A
        missing counter is created holding 0, with ``ttl``."""
        ...

    def publish(self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes) -> None:
        """Store ``item`` and wake the callers of :meth:`wait_item` on ``key``."""
        ...

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> list[Failure]:
        """:meth:`publish` for several keys (``wake_keys``: key -> its wake key), in one round
        trip per server; return the failed servers' keys."""
        ...

    def wait_item(
        self,
        key: bytes,
        wake_key: bytes,
        timeout: float | None,
        waiting: Callable[[bytes | None], bool],
    ) -> bytes | None:
        """Read ``key`` until ``waiting(item)`` is false or ``timeout`` seconds have passed
        (``None``: no limit); return the last item read."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def check_ttl(ttl: object, what: str = "ttl") -> float | None:
    """``ttl`` as a float, or ``None`` (no expiry); ``ValueError``/``TypeError`` otherwise."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(ttl).__name__}")
    value = float(ttl)
    if not value > 0 or math.isinf(value):
        raise ValueError(
            f"{what} must be a positive, finite number of seconds or None, not {ttl!r}"
        )
    return value


def check_seconds(value: object, what: str) -> float:
    """A positive, finite number of seconds, as a float."""
    checked = check_ttl(value, what)
    if checked is None:
        raise TypeError(f"{what} must be a number of seconds, not None")
    return checked


class ServerHealth:
    """Whether one server may be tried, and the log lines when that changes.

    After a connection failure the server is *down* for ``dead_retry`` seconds: calls that
    need it raise ``BackendConnectionError`` at once instead of waiting for a timeout each. The
    first call after that tries it again; a success brings it back, a failure starts another
    ``dead_retry`` seconds. Going down is logged at WARNING, coming back at INFO, every failed
    call at DEBUG.
    """

    __slots__ = ("_lock", "dead_retry", "down_until", "last_error", "name")

    def __init__(self, name: str, dead_retry: float) -> None:
        self.name = name
        self.dead_retry = dead_retry
        self.down_until = 0.0  # time.monotonic() until which the server is down; 0.0: up
        self.last_error = ""
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise ``BackendConnectionError`` if the server is down."""
        until = self.down_until
        if until and time.monotonic() < until:
            raise BackendConnectionError(
                f"{self.name} is down (last error: {self.last_error}); it is tried again at most "
                f"{self.dead_retry:g} s after its last failure"
            )

    def failed(self, error: BaseException) -> None:
        """Record a connection failure: the server is down for ``dead_retry`` seconds."""
        text = f"{type(error).__name__}: {error}"
        with self._lock:
            was_up = not self.down_until
            self.down_until = time.monotonic() + self.dead_retry
            self.last_error = text
        if was_up:
            logger.warning(
                "%s failed (%s); calls that need it fail at once for %g s", self.name, text,
                self.dead_retry,
            )  # fmt: skip
        else:
            logger.debug("%s failed again (%s)", self.name, text)

    def succeeded(self) -> None:
        """Record a success; cheap when the server was up."""
        if self.down_until:
            with self._lock:
                was_down, self.down_until = bool(self.down_until), 0.0
            if was_down:
                logger.info("%s answers again", self.name)
