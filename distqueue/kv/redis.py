"""The Redis cache backend: strings with a TTL, on one server, a Redis Cluster or the master
that Redis Sentinel names (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
``redis+sentinel://`` and their TLS forms).

The clients come from the queues' own factory (:func:`distqueue.url.make_redis_clients`), with
the same time limits (:class:`~distqueue.backends.connection.RedisOptions`), and every call is
retried as the queues' calls are (:class:`~distqueue.backends.connection.RetryBudget`): after a
connection failure, a replica's ``READONLY``, or a Cluster changing (``CLUSTERDOWN``,
``TRYAGAIN``, redirects), for at most ``retry_window`` seconds. That is what carries a call
through a fail-over: a Sentinel's client asks the sentinels for the master again, a Cluster's
reads the layout again. A *timeout* is not retried: a server that does not answer would only
make the caller wait again, so a call to a silent server ends after ``connect_timeout +
socket_timeout``.

Each item is one Redis string, written with ``SET ... PX``; ``add`` is ``SET NX``, ``replace``
is ``SET XX``. Scripts (``distqueue/backends/lua/kv_*.lua``, run by
:class:`~distqueue.backends.scripts.Script`, or its asyncio counterpart) do what must read and
write in one step: counters (``kv_counter.lua``: create when missing, stop at 0 on the way
down), compare-and-set (``kv_cas.lua``) and append/prepend on a plain bytes value
(``kv_append.lua``).

Lost replies
    Every other write is idempotent (a ``SET``, a ``DEL``, a ``MULTI`` that deletes and pushes
    one token), so sending it twice changes nothing more. A script that writes is not, so each
    call carries a request id, and the script's reply is kept under a key named after it, in
    the item's hash slot, for ``REPLY_WINDOW`` seconds: a second run of the same request returns
    the first reply and changes nothing. A call whose reply was lost is retried under the same
    id within ``retry_window``; when no attempt learnt the outcome (a timeout after sending, or
    the retries ran out), the call raises ``OutcomeUnknownError``: it may or may not have
    happened, and it never happened twice. A failure before anything was sent is
    ``BackendConnectionError``: nothing changed.

Waiting
    A waiter of ``wait_item`` blocks in ``BRPOPLPUSH`` on the item's wake-up list, never
    polling: ``publish`` writes the item and pushes one token to that list in one ``MULTI`` (both
    keys share a hash slot, see :mod:`.keys`); the token stays there (each waiter rotates it,
    leaving it in place) until it expires with the item, so every waiter wakes, including one
    that starts waiting after the publish. A blocking call waits at most ``BLOCK_SLICE``
    seconds at a time and is never sent a timeout of 0 (Redis reads it as "forever"); a wait
    that fails (a master killed or demoted under it) counts as a quiet slice, and the next read
    of the item, retried, finds the new master.

Redis Cluster
    Calls on several keys go to every node concerned: ``get_many`` by ``MGET`` per slot, the
    writes by pipelines per node; ``publish_many`` runs one ``MULTI`` per slot. Each call
    reports a failure for all its keys or none.

Items have no size limit worth chunking for (``ITEM_SIZE_LIMIT``, Redis's 512 MiB string).

Errors of redis-py are translated here: connection failures and timeouts to
``BackendConnectionError`` (the server is then down for ``dead_retry`` seconds, see
:class:`~distqueue.kv.base.ServerHealth`), a counter command on another kind of value to
``WrongTypeError``, anything else the server refuses to ``BackendError``.

All of this but the I/O lives in :mod:`.redisprotocol` (the commands of each call, request
ids, grouping by slot, what replies and failures mean); :class:`RedisBackend` here performs it
with redis-py's blocking clients, and :class:`~.aioredis.AsyncRedisBackend` with its asyncio
ones (for :class:`distqueue.aio.Cache`), so both behave alike and share the same keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions

from ..backends.base import Deadline
from ..backends.connection import BLOCK_SLICE, MIN_BLOCK, RETRYABLE, RedisOptions, Retrier
from ..backends.scripts import Script, ServerTraits
from .base import Failure, KeepTTL, ServerHealth
from .redisprotocol import (
    ITEM_SIZE_LIMIT,
    MAX_TTL_MS,
    REDIS_ERRORS,
    Commands,
    Operation,
    RedisKVProtocol,
    RunScript,
    Step,
    item_stamp,
    request_key,
)
from .steps import run

__all__ = ["ITEM_SIZE_LIMIT", "MAX_TTL_MS", "RedisBackend", "item_stamp", "request_key"]

T = TypeVar("T")

_WAIT_ERROR_PAUSE = 0.05
"""Seconds a waiter pauses after a failed blocking command, before it reads the item again."""


class RedisBackend:
    """Items on Redis (one server, a Cluster or a Sentinel's master); see
    :class:`~distqueue.kv.base.KVBackend` and the module docstring."""

    shared = True
    keeps_ttl = True

    def __init__(
        self,
        client: Any,
        *,
        name: str,
        dead_retry: float,
        options: RedisOptions,
        waits: Any = None,
        owns_client: bool = True,
    ) -> None:
        self._client = client
        self._traits = ServerTraits()  # shared by its script calls
        # Blocking commands wait on a client whose socket timeout leaves room for them, so
        # that the other commands keep the short one.
        self._waits = waits if waits is not None else client
        self._owns_client = owns_client
        self.health = ServerHealth(name, dead_retry)
        self.protocol = RedisKVProtocol(
            self.health,
            Retrier(options, name),
            cluster=isinstance(client, redis.cluster.RedisCluster),
        )

    # -- performing steps ----------------------------------------------------------------------

    def _drive(self, operation: Operation[T]) -> T:
        return run(operation, self._perform)

    def _perform(self, step: Step, wait_until: float | None = 0.0) -> Any:
        """One step, retried as its :class:`~.redisprotocol.Attempt` decides."""
        attempt = self.protocol.attempt(step, wait_until)
        while True:
            started = time.monotonic()
            try:
                reply = self._send(step)
            except Exception as exc:
                time.sleep(attempt.failed(exc, started))
                continue
            attempt.succeeded()
            return reply

    def _send(self, step: Step) -> Any:
        if type(step) is RunScript:
            return Script(
                self._client, step.file, [step.key], retry_safe=True, traits=self._traits
            )(*step.args)
        assert type(step) is Commands
        if len(step.commands) == 1 and not step.transaction:
            return self._client.execute_command(*step.commands[0])
        pipe = self._client.pipeline(transaction=step.transaction)
        for command in step.commands:
            pipe.execute_command(*command)
        return pipe.execute()

    # -- the contract --------------------------------------------------------------------------

    def item_size_limit(self) -> int | None:
        return ITEM_SIZE_LIMIT

    def memory_limit(self) -> int | None:
        return None  # maxmemory is often 0 (no limit); chunk counts are bounded by MAX_PIECES

    def get(self, key: bytes) -> bytes | None:
        return self._drive(self.protocol.get(key))

    def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        return self._drive(self.protocol.get_many(keys))

    def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        self._drive(self.protocol.set(key, item, ttl))

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        return self._drive(self.protocol.set_many(items, ttl))

    def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        return self._drive(self.protocol.add(key, item, ttl))

    def replace(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        return self._drive(self.protocol.replace(key, item, ttl))

    def gets(self, key: bytes) -> tuple[bytes | None, object | None]:
        return self._drive(self.protocol.gets(key))

    def cas(self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object) -> bool:
        return self._drive(self.protocol.cas(key, item, ttl, stamp))

    def append(self, key: bytes, data: bytes, prepend: bool) -> bool | None:
        return self._drive(self.protocol.append(key, data, prepend))

    def delete(self, key: bytes) -> bool:
        return self._drive(self.protocol.delete(key))

    def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        return self._drive(self.protocol.delete_many(keys))

    def touch(self, key: bytes, ttl: float | None) -> bool:
        return self._drive(self.protocol.touch(key, ttl))

    def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._drive(self.protocol.incr(key, delta, ttl))

    def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._drive(self.protocol.decr(key, delta, ttl))

    def publish(self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes) -> None:
        self._drive(self.protocol.publish(key, item, ttl, wake_key))

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> list[Failure]:
        return self._drive(self.protocol.publish_many(items, ttl, wake_keys))

    def wait_item(
        self,
        key: bytes,
        wake_key: bytes,
        timeout: float | None,
        waiting: Callable[[bytes | None], bool],
    ) -> bytes | None:
        deadline = Deadline(timeout)
        # A read inside a wait rides out an outage for as long as the wait may last.
        wait_until = None if timeout is None else deadline.at
        read = Commands((("GET", key),), "a read", key=key)
        while True:
            item: bytes | None = self._perform(read, wait_until)
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
                self._waits.brpoplpush(wake_key, wake_key, max(block, MIN_BLOCK))
            except RETRYABLE:
                # The server went away or stopped being the master: read the item again
                # (retried, on the new master) after a short pause.
                time.sleep(min(_WAIT_ERROR_PAUSE, block))
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith("UNBLOCKED"):
                    raise self.protocol.error(exc) from exc
            except REDIS_ERRORS as exc:
                raise self.protocol.error(exc) from exc

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
            if self._waits is not self._client:
                self._waits.close()
