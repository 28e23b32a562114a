"""The Redis cache backend (``redis://``, ``rediss://``, ``unix://``): strings with a TTL.

Each item is one Redis string, written with ``SET ... PX``; ``add`` is ``SET NX PX``. Counters
are updated by ``lua/counter.lua`` (create when missing, stop at 0 on the way down).

Counters and lost replies
    Every other write is idempotent (a ``SET``, a ``DEL``, a ``MULTI`` that deletes and pushes
    one token), so sending it twice changes nothing more. A counter update is not, so each
    call carries a request id made here, and the script records its outcome under
    ``{counter key}:req:{id}`` (same hash slot) for ``REQUEST_WINDOW`` seconds; a second
    execution of the same request returns the recorded outcome and changes nothing. When a
    call's connection closes or resets after the command was sent, it is sent once more on a
    fresh connection with the same id, which returns the first outcome. When no attempt
    could learn the outcome (a timeout after sending, or the retry failed too), the call
    raises ``OutcomeUnknownError``: the counter may or may not have changed. A failure before the
    command was sent (no connection) is ``BackendConnectionError``: nothing changed. A waiter of
``wait_item`` blocks in ``BRPOPLPUSH`` on the item's wake-up list, never polling: ``publish``
writes the item and pushes one token to that list in one ``MULTI``; the token stays there (each
waiter rotates it, leaving it in place) until it expires with the item, so every waiter wakes,
including one that starts waiting after the publish. A blocking call waits at most
``BLOCK_SLICE`` seconds at a time, and is never sent a timeout of 0 (Redis reads it as
"forever").

Items have no size limit worth chunking for (``ITEM_SIZE_LIMIT``, Redis's 512 MiB string).

Errors of redis-py are translated here: connection failures and timeouts to
``BackendConnectionError`` (the server is then down for ``dead_retry`` seconds, see
:class:`~distqueue.kv.base.ServerHealth`), a counter command on another kind of value to
``WrongTypeError``, anything else the server refuses to ``BackendError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

import redis
import redis.exceptions

from ..backends.base import Deadline
from ..backends.connection import BLOCK_SLICE, MIN_BLOCK
from ..errors import BackendConnectionError, BackendError, OutcomeUnknownError, WrongTypeError
from .base import Failure, ServerHealth

ITEM_SIZE_LIMIT = 512 * 1024 * 1024
"""The largest Redis string (``proto-max-bulk-len``'s default)."""


REQUEST_WINDOW = 60.0
"""Seconds the outcome of a counter update is kept, so that a retry of it changes nothing."""

_NETWORK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class _Failed(Exception):
    """One attempt of a counter update failed on the network (internal)."""

    def __init__(self, error: redis.exceptions.RedisError, *, sent: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.sent = sent  # the command may have reached the server


def _request_key(key: bytes, request: bytes) -> bytes:
    """A key for one request's outcome in the same Redis Cluster slot as ``key``.

    A key with a hash tag (``{...}``, not empty) keeps it; any other is hashed whole, so it
    becomes the tag. (A key holding a ``}`` outside a tag has no such key by name; the
    cache's keys with one would then need another slot, which only a Cluster would see.)
    """
    start = key.find(b"{")
    if start != -1 and key.find(b"}", start + 2) != -1 and key[start + 1 : start + 2] != b"}":
        return key + b":req:" + request
    return b"{" + key + b"}:req:" + request


MAX_TTL_MS = 10**15
"""The longest TTL sent to Redis, in milliseconds (about 31,700 years); a longer one is clamped
to it (Redis refuses an expiry that overflows its clock)."""


def _ms(ttl: float) -> int:
    return max(1, min(math.ceil(ttl * 1000), MAX_TTL_MS))


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text(encoding="utf-8")


class RedisBackend:
    """Items on one Redis server; see :class:`~distqueue.kv.base.KVBackend`."""

    shared = True

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str,
        dead_retry: float,
        owns_client: bool = True,
        blocking_client: redis.Redis | None = None,
    ) -> None:
        self._client = client
        # Blocking commands wait on a client whose socket timeout leaves room for them, so
        # that the other commands keep the short one.
        self._blocking_client = blocking_client if blocking_client is not None else client
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
        """Run the counter script under a fresh request id; see "Counters and lost replies"
        in the module docstring for the retry and ``OutcomeUnknownError``."""
        self.health.check()
        request = os.urandom(12).hex().encode("ascii")
        keys = [key, _request_key(key, request)]
        args = [op, delta, 0 if ttl is None else _ms(ttl), _ms(REQUEST_WINDOW)]
        maybe_sent = False
        failure: _Failed | None = None
        for _ in range(2):
            try:
                value = self._run_counter(keys, args)
            except _Failed as exc:
                failure = exc
                maybe_sent = maybe_sent or exc.sent
                if isinstance(exc.error, redis.exceptions.TimeoutError):
                    break  # a silent server: trying again would only double the wait
                continue
            except redis.exceptions.RedisError as exc:
                raise self._error(exc, key) from exc
            self.health.succeeded()
            return int(value)
        assert failure is not None
        error = self._error(failure.error)  # marks the server down
        if maybe_sent:
            raise OutcomeUnknownError(
                f"{self.health.name}: the reply to {op} of {key.decode('ascii')!r} was lost and "
                f"no retry learnt whether it happened ({failure.error}); the counter may or "
                "may not have changed"
            ) from failure.error
        raise error from failure.error

    def _run_counter(self, keys: list[bytes], args: list[Any]) -> Any:
        """One attempt of the counter script on a connection of the pool; ``_Failed`` on a
        network error, saying whether the command may have reached the server."""
        pool = self._client.connection_pool
        try:
            conn: Any = pool.get_connection()
        except _NETWORK_ERRORS as exc:
            raise _Failed(exc, sent=False) from exc
        try:
            try:
                conn.send_command("EVALSHA", self._counter.sha, len(keys), *keys, *args)
            except _NETWORK_ERRORS as exc:  # not all of it left: the server runs nothing
                conn.disconnect()
                raise _Failed(exc, sent=False) from exc
            try:
                try:
                    return conn.read_response()
                except redis.exceptions.NoScriptError:
                    conn.send_command("EVAL", self._counter.script, len(keys), *keys, *args)
                    return conn.read_response()
            except _NETWORK_ERRORS as exc:
                conn.disconnect()
                raise _Failed(exc, sent=True) from exc
        finally:
            pool.release(conn)

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
        deadline = Deadline(timeout)
        while True:
            item = self.get(key)
            if not waiting(item):
                return item
            block = BLOCK_SLICE
            remaining = deadline.remaining()
            if remaining is not None:
                if remaining <= 0:
                    return item
                block = min(block, remaining)
            try:
                # Rotating the one-token list onto itself leaves the token for other waiters.
                self._blocking_client.brpoplpush(wake_key, wake_key, max(block, MIN_BLOCK))
            except redis.exceptions.RedisError as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
            if self._blocking_client is not self._client:
                self._blocking_client.close()
