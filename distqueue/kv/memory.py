"""The in-process cache backend (``memory://``): a dict of bytes under one lock.

Items are stored as the same bytes a server would hold, so values are copies (a change to a
value after ``set`` is not seen by ``get``), serializer errors are raised as on a server, and
behaviour matches Redis and memcached except that there is no item size limit and no
eviction: an item leaves when its TTL passes or it is deleted. Cache objects of one process
with the same namespace share one store; different processes never share anything. Waiting
(:meth:`MemoryBackend.wait_item`) is a ``threading.Condition``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence

from ..backends.base import Deadline
from ..errors import BackendError, WrongTypeError
from .base import KEEP_TTL, Failure, KeepTTL
from .frames import COUNTER_MAX, parse_counter

_SWEEP_EVERY = 1024
"""Writes between two sweeps of expired items."""


class _Store:
    """The items of one namespace."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.items: dict[bytes, tuple[bytes, float | None]] = {}
        self.writes = 0
        # the write that stored each item, for compare-and-set (kept for deleted keys too:
        # numbers only grow, so a stale one never matches a later item)
        self.versions: dict[bytes, int] = {}


_registry: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def _deadline(ttl: float | None) -> float | None:
    return None if ttl is None else time.monotonic() + ttl


class MemoryBackend:
    """In-process storage of one namespace; see :class:`~distqueue.kv.base.KVBackend`."""

    shared = False
    keeps_ttl = True

    def __init__(self, namespace: str) -> None:
        with _registry_lock:
            store = _registry.get(namespace)
            if store is None:
                store = _registry[namespace] = _Store()
        self._store = store  # held strongly: the store lives while a backend uses it
        self._lock = store.lock
        self._items = store.items

    # -- helpers, called with the lock held ----------------------------------------------------

    def _lookup(self, key: bytes) -> bytes | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        item, expires = entry
        if expires is not None and time.monotonic() >= expires:
            del self._items[key]
            return None
        return item

    def _store_item(self, key: bytes, item: bytes, ttl: float | None) -> None:
        self._items[key] = (item, _deadline(ttl))
        store = self._store
        store.writes += 1
        store.versions[key] = store.writes
        if store.writes % _SWEEP_EVERY == 0:
            now = time.monotonic()
            for stale in [
                k for k, (_, exp) in self._items.items() if exp is not None and exp <= now
            ]:
                del self._items[stale]
            for gone in [k for k in store.versions if k not in self._items]:
                del store.versions[gone]
        store.changed.notify_all()

    # -- the contract --------------------------------------------------------------------------

    def item_size_limit(self) -> int | None:
        return None

    def memory_limit(self) -> int | None:
        return None

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._lookup(key)

    def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        found: dict[bytes, bytes] = {}
        with self._lock:
            for key in keys:
                item = self._lookup(key)
                if item is not None:
                    found[key] = item
        return found, []

    def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        with self._lock:
            self._store_item(key, item, ttl)

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        with self._lock:
            for key, item in items.items():
                self._store_item(key, item, ttl)
        return []

    def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        with self._lock:
            if self._lookup(key) is not None:
                return False
            self._store_item(key, item, ttl)
            return True

    def replace(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        with self._lock:
            if self._lookup(key) is None:
                return False
            self._store_item(key, item, ttl)
            return True

    def gets(self, key: bytes) -> tuple[bytes | None, object | None]:
        with self._lock:
            item = self._lookup(key)
            return (None, None) if item is None else (item, self._store.versions.get(key))

    def cas(self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object) -> bool:
        with self._lock:
            if self._lookup(key) is None or self._store.versions.get(key) != stamp:
                return False
            if ttl is KEEP_TTL:
                self._keep_ttl(key, item)
            else:
                self._store_item(key, item, ttl)
            return True

    def append(self, key: bytes, data: bytes, prepend: bool) -> bool | None:
        with self._lock:
            item = self._lookup(key)
            if item is None:
                return False
            if item[:1] != b"b":
                return None
            self._keep_ttl(key, b"b" + data + item[1:] if prepend else item + data)
            return True

    def delete(self, key: bytes) -> bool:
        with self._lock:
            present = self._lookup(key) is not None
            if present:
                del self._items[key]
                self._store.changed.notify_all()
            return present

    def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        with self._lock:
            for key in keys:
                self._items.pop(key, None)
            self._store.changed.notify_all()
        return []

    def touch(self, key: bytes, ttl: float | None) -> bool:
        with self._lock:
            item = self._lookup(key)
            if item is None:
                return False
            self._items[key] = (item, _deadline(ttl))
            return True

    def _add_to_counter(self, key: bytes, delta: int, ttl: float | None) -> int:
        with self._lock:
            item = self._lookup(key)
            if item is None:
                value = max(delta, 0)
                self._store_item(key, str(value).encode("ascii"), ttl)
                return value
            current = parse_counter(item)
            if current is None:
                raise WrongTypeError(
                    f"the value under {key.decode('ascii')!r} is not a counter", key=key.decode()
                )
            value = max(current + delta, 0)
            if value > COUNTER_MAX:
                raise BackendError(f"incrementing {key.decode('ascii')!r} would overflow")
            self._keep_ttl(key, str(value).encode("ascii"))
            return value

    def _keep_ttl(self, key: bytes, item: bytes) -> None:
        """Store ``item`` over the item under ``key``, keeping its expiry (lock held)."""
        store = self._store
        self._items[key] = (item, self._items[key][1])
        store.writes += 1
        store.versions[key] = store.writes
        store.changed.notify_all()

    def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._add_to_counter(key, delta, ttl)

    def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._add_to_counter(key, -delta, ttl)

    def publish(self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes) -> None:
        self.set(key, item, ttl)  # every write wakes the waiters

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> list[Failure]:
        return self.set_many(items, ttl)  # every write wakes the waiters

    def wait_item(
        self,
        key: bytes,
        wake_key: bytes,
        timeout: float | None,
        waiting: Callable[[bytes | None], bool],
    ) -> bytes | None:
        deadline = Deadline(timeout).at
        with self._lock:
            while True:
                item = self._lookup(key)
                if not waiting(item):
                    return item
                # Wake at the deadline, or when the item expires (nobody notifies that).
                now = time.monotonic()
                wake = deadline
                expires = self._items[key][1] if item is not None else None
                if expires is not None and (wake is None or expires < wake):
                    wake = expires
                if wake is None:
                    self._store.changed.wait()
                    continue
                if deadline is not None and deadline <= now:
                    return item
                self._store.changed.wait(max(wake - now, 0.0))

    def close(self) -> None:
        """Nothing to release: the items stay while another object of the namespace lives."""
