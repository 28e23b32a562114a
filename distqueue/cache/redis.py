"""The Redis cache backend (``redis://``, ``rediss://``, ``unix://``): strings with a TTL.

Each item is one Redis string, written with ``SET ... PX``; ``add`` is ``SET NX PX``. Counters
are updated by ``lua/counter.lua`` (create when missing, stop at 0 on the way down). A waiter of
``wait_item`` blocks in ``BRPOPLPUSH`` on the item's wake-up list, never polling: ``publish``
writes the item and pushes one token to that list in one ``MULTI``; the token stays there (each
waiter rotates it, leaving it in place) until it expires with the item, so every waiter wakes,
including one that starts waiting after the publish. A blocking call waits at most
``BLOCK_SLICE`` seconds at a time, and is never sent a timeout of 0 (Redis reads it as
"forever").

Items have no size limit worth chunking for (``ITEM_SIZE_LIMIT``, Redis's 512 MiB string).

Errors of redis-py are translated here: connection failures and timeouts to
``BackendConnectionError`` (the server is then down for ``dead_retry`` seconds, see
:class:`~distqueue.cache.base.ServerHealth`), a counter command on another kind of value to
``WrongTypeError``, anything else the server refuses to ``BackendError``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import redis
import redis.exceptions

from ..errors import BackendConnectionError, BackendError, WrongTypeError
from .base import Failure, ServerHealth

ITEM_SIZE_LIMIT = 512 * 1024 * 1024
"""The largest Redis string (``proto-max-bulk-len``'s default)."""

BLOCK_SLICE = 5.0
"""The longest a single blocking command waits, in seconds; less than the socket timeout."""

_MIN_BLOCK = 0.01


MAX_TTL_MS = 10**15
"""The longest TTL sent to Redis, in milliseconds (about 31,700 years); a longer one is clamped
to it (Redis refuses an expiry that overflows its clock)."""


def _ms(ttl: float) -> int:
    return max(1, min(math.ceil(ttl * 1000), MAX_TTL_MS))


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text(encoding="utf-8")


class RedisBackend:
    """Items on one Redis server; see :class:`~distqueue.cache.base.CacheBackend`."""

    shared = True

    def __init__(
        self, client: redis.Redis, *, name: str, dead_retry: float, owns_client: bool = True
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self.health = ServerHealth(f"Redis server {name}", dead_retry)
        self._counter = client.register_script(_script("counter.lua"))

    def _error(self, exc: redis.exceptions.RedisError, key: bytes | None = None) -> BackendError:
        """The distqueue exception for an error of redis-py (raise it ``from exc``)."""
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            self.health.failed(exc)
            return BackendConnectionError(f"{self.health.name} is unreachable: {exc}")
        text = str(exc)
        if key is not None and ("NOTCOUNTER" in text or "WRONGTYPE" in text):
            name = key.decode("ascii")
            return WrongTypeError(f"the value under {name!r} is not a counter", key=name)
        return BackendError(f"{self.health.name} refused a command: {exc}")

    def item_size_limit(self) -> int | None:
        return ITEM_SIZE_LIMIT

    def memory_limit(self) -> int | None:
        return None  # maxmemory is often 0 (no limit); chunk counts are bounded by MAX_PIECES

    def get(self, key: bytes) -> bytes | None:
        self.health.check()
        try:
            item: bytes | None = self._client.get(key)  # type: ignore[assignment]
        except redis.exceptions.RedisError as exc:
            raise self._error(exc) from exc
        self.health.succeeded()
        return item

    def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        if not keys:
            return {}, []
        try:
            self.health.check()
            items: list[bytes | None] = self._client.mget(keys)  # type: ignore[assignment]
        except BackendError as exc:
            return {}, [Failure(self.health.name, list(keys), exc)]
        except redis.exceptions.RedisError as exc:
            return {}, [Failure(self.health.name, list(keys), self._error(exc))]
        self.health.succeeded()
        return {key: item for key, item in zip(keys, items, strict=True) if item is not None}, []

    def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        self.health.check()
        try:
            self._client.set(key, item, px=None if ttl is None else _ms(ttl))
        except redis.exceptions.RedisError as exc:
            raise self._error(exc) from exc
        self.health.succeeded()

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        px = None if ttl is None else _ms(ttl)

        def write(pipe: Any) -> None:
            for key, item in items.items():
                pipe.set(key, item, px=px)

        return self._pipelined(items, write, transaction=False)

    def _pipelined(
        self, items: Mapping[bytes, bytes], write: Callable[[Any], None], *, transaction: bool
    ) -> list[Failure]:
        """Run ``write``'s commands for ``items`` in one round trip; the failure, if any."""
        if not items:
            return []
        try:
            self.health.check()
            pipe = self._client.pipeline(transaction=transaction)
            write(pipe)
            pipe.execute()
        except BackendError as exc:
            return [Failure(self.health.name, list(items), exc)]
        except redis.exceptions.RedisError as exc:
            return [Failure(self.health.name, list(items), self._error(exc))]
        self.health.succeeded()
        return []

    def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        self.health.check()
        try:
            stored = self._client.set(key, item, nx=True, px=None if ttl is None else _ms(ttl))
        except redis.exceptions.RedisError as exc:
            raise self._error(exc) from exc
        self.health.succeeded()
        return bool(stored)

    def delete(self, key: bytes) -> bool:
        self.health.check()
        try:
            removed = self._client.delete(key)
        except redis.exceptions.RedisError as exc:
            raise self._error(exc) from exc
        self.health.succeeded()
        return bool(removed)

    def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        if not keys:
            return []
        try:
            self.health.check()
            self._client.delete(*keys)
        except BackendError as exc:
            return [Failure(self.health.name, list(keys), exc)]
        except redis.exceptions.RedisError as exc:
            return [Failure(self.health.name, list(keys), self._error(exc))]
        self.health.succeeded()
        return []

    def touch(self, key: bytes, ttl: float | None) -> bool:
        self.health.check()
        try:
            if ttl is not None:
                touched = self._client.pexpire(key, _ms(ttl))
            else:
                pipe = self._client.pipeline(transaction=True)
                pipe.exists(key)
                pipe.persist(key)
                touched = pipe.execute()[0]
        except redis.exceptions.RedisError as exc:
            raise self._error(exc) from exc
        self.health.succeeded()
        return bool(touched)

    def _count(self, op: str, key: bytes, delta: int, ttl: float | None) -> int:
        self.health.check()
        try:
            value = self._counter(keys=[key], args=[op, delta, 0 if ttl is None else _ms(ttl)])
        except redis.exceptions.RedisError as exc:
            raise self._error(exc, key) from exc
        self.health.succeeded()
        return int(value)

    def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._count("incr", key, delta, ttl)

    def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._count("decr", key, delta, ttl)

    def publish(self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes) -> None:
        self.health.check()
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(key, item, px=None if ttl is None else _ms(ttl))
            pipe.delete(wake_key)
            pipe.rpush(wake_key, b"1")
            if ttl is not None:
                pipe.pexpire(wake_key, _ms(ttl))
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._error(exc) from exc
        self.health.succeeded()

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> list[Failure]:
        px = None if ttl is None else _ms(ttl)

        def write(pipe: Any) -> None:
            for key, item in items.items():
                wake_key = wake_keys[key]
                pipe.set(key, item, px=px)
                pipe.delete(wake_key)
                pipe.rpush(wake_key, b"1")
                if px is not None:
                    pipe.pexpire(wake_key, px)

        # as publish(), in one MULTI: a waiter never sees a wake-up before its item
        return self._pipelined(items, write, transaction=True)

    def wait_item(
        self,
        key: bytes,
        wake_key: bytes,
        timeout: float | None,
        waiting: Callable[[bytes | None], bool],
    ) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = self.get(key)
            if not waiting(item):
                return item
            block = BLOCK_SLICE
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return item
                block = min(block, remaining)
            try:
                # Rotating the one-token list onto itself leaves the token for other waiters.
                self._client.brpoplpush(wake_key, wake_key, max(block, _MIN_BLOCK))
            except redis.exceptions.RedisError as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
