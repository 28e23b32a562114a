"""The Redis cache backend: strings with a TTL, on one server, a Redis Cluster or the master
that Redis Sentinel names (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``,
``redis+sentinel://`` and their TLS forms).

The clients come from the queues' own factory (:func:`distqueue.url.make_redis_clients`), with
the same time limits (:class:`~distqueue.backends.connection.RedisOptions`), and every call is
retried as the queues' calls are (:class:`~distqueue.backends.connection.Retrier`): after a
connection failure, a replica's ``READONLY``, or a Cluster changing (``CLUSTERDOWN``,
``TRYAGAIN``, redirects), for at most ``retry_window`` seconds. That is what carries a call
through a fail-over: a Sentinel's client asks the sentinels for the master again, a Cluster's
reads the layout again. A *timeout* is not retried: a server that does not answer would only
make the caller wait again, so a call to a silent server ends after ``connect_timeout +
socket_timeout``.

Each item is one Redis string, written with ``SET ... PX``; ``add`` is ``SET NX``, ``replace``
is ``SET XX``. Scripts (``distqueue/backends/lua/kv_*.lua``, run by
:class:`~distqueue.backends.scripts.Script`) do what must read and write in one step: counters
(``kv_counter.lua``: create when missing, stop at 0 on the way down), compare-and-set
(``kv_cas.lua``) and append/prepend on a plain bytes value (``kv_append.lua``).

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
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions

from ..backends.base import Deadline
from ..backends.connection import BLOCK_SLICE, MIN_BLOCK, RETRYABLE, RedisOptions, Retrier
from ..backends.scripts import NotSent, RequestIds, Script
from ..errors import BackendConnectionError, BackendError, OutcomeUnknownError, WrongTypeError
from .base import KEEP_TTL, Failure, KeepTTL, ServerHealth

T = TypeVar("T")

ITEM_SIZE_LIMIT = 512 * 1024 * 1024
"""The largest Redis string (``proto-max-bulk-len``'s default)."""

_WAIT_ERROR_PAUSE = 0.05
"""Seconds a waiter pauses after a failed blocking command, before it reads the item again."""

_CLUSTER_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


class _Silent(Exception):
    """An attempt timed out (internal): not retried, see the module docstring."""

    def __init__(self, error: BaseException, *, sent: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.sent = sent


def request_key(key: bytes, request: str) -> str:
    """A key for one request's reply in the same Redis Cluster slot as ``key``.

    A key with a hash tag (``{...}``, not empty) keeps it; any other is hashed whole, so it
    becomes the tag. (A key holding a ``}`` outside a tag has no such key by name; the cache's
    keys with one would then need another slot, which only a Cluster would see.)
    """
    text = key.decode("ascii")
    start = text.find("{")
    if start != -1 and text.find("}", start + 2) != -1 and text[start + 1 : start + 2] != "}":
        return f"{text}:req:{request}"
    return f"{{{text}}}:req:{request}"


MAX_TTL_MS = 10**15
"""The longest TTL sent to Redis, in milliseconds (about 31,700 years); a longer one is clamped
to it (Redis refuses an expiry that overflows its clock)."""


def _ms(ttl: float) -> int:
    return max(1, min(math.ceil(ttl * 1000), MAX_TTL_MS))


def item_stamp(item: bytes) -> str:
    """What a compare-and-set token holds on Redis: the SHA-1 of the item read, as
    ``kv_cas.lua`` computes it on the server."""
    return hashlib.sha1(item).hexdigest()


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
        # Blocking commands wait on a client whose socket timeout leaves room for them, so
        # that the other commands keep the short one.
        self._waits = waits if waits is not None else client
        self._owns_client = owns_client
        self._cluster = isinstance(client, redis.cluster.RedisCluster)
        self.health = ServerHealth(name, dead_retry)
        self._options = options
        self._retrier = Retrier(options, name)
        self._request_id = RequestIds()

    # -- running calls -------------------------------------------------------------------------

    def _call(
        self,
        attempt: Callable[[], T],
        *,
        what: str,
        changes: bool = False,
        key: bytes | None = None,
        wait_until: float | None = 0.0,
    ) -> T:
        """Run ``attempt`` with the retries of the module docstring; translate its errors.

        ``changes``: the call is a script that writes (sent twice, it would write twice were
        it not for its request id), so a failure after sending is ``OutcomeUnknownError``.
        """
        self.health.check()
        sent = False

        def once() -> T:
            nonlocal sent
            try:
                return attempt()
            except NotSent as exc:
                if isinstance(exc.error, redis.exceptions.TimeoutError):
                    raise _Silent(exc.error, sent=False) from exc
                raise
            except redis.exceptions.TimeoutError as exc:
                raise _Silent(exc, sent=True) from exc
            except redis.exceptions.ConnectionError:
                sent = True  # maybe: a connection that failed after the command left
                raise

        try:
            result = self._retrier.run(once, what=what, changes=changes, wait_until=wait_until)
        except _Silent as exc:
            self.health.failed(exc.error)
            if changes and (sent or exc.sent):
                raise OutcomeUnknownError(
                    f"{self.health.name} did not answer {what}, which may or may not have taken "
                    f"effect: {exc.error}"
                ) from exc.error
            raise BackendConnectionError(
                f"{self.health.name} is unreachable: {exc.error}"
            ) from exc.error
        except BackendConnectionError as exc:  # the retries ran out; OutcomeUnknownError too
            self.health.failed(exc)
            raise
        except _CLUSTER_ERRORS as exc:
            raise self._error(exc, key) from exc
        self.health.succeeded()
        return result

    def _script(self, name: str, key: bytes, *args: Any, what: str) -> Any:
        """Run the retry-safe script ``name`` on ``key`` under a fresh request id."""
        skey = key.decode("ascii")
        script = Script(self._client, name, [skey], retry_safe=True)
        reply_key = request_key(key, self._request_id())
        return self._call(
            lambda: script(reply_key, *args), what=f"{what} of {skey!r}", changes=True, key=key
        )

    def _error(self, exc: BaseException, key: bytes | None = None) -> BackendError:
        """The distqueue exception for an error of redis-py that is not a connection failure
        (raise it ``from exc``)."""
        text = str(exc)
        if key is not None and ("NOTCOUNTER" in text or "WRONGTYPE" in text):
            name = key.decode("ascii")
            return WrongTypeError(f"the value under {name!r} is not a counter", key=name)
        return BackendError(f"{self.health.name} refused a command: {exc}")

    def _batch(
        self, keys: Sequence[bytes], attempt: Callable[[], T], what: str
    ) -> tuple[T | None, list[Failure]]:
        """A call on several keys: its result, or a failure for all of them."""
        try:
            return self._call(attempt, what=what), []
        except BackendError as exc:
            return None, [Failure(self.health.name, list(keys), exc)]

    # -- the contract --------------------------------------------------------------------------

    def item_size_limit(self) -> int | None:
        return ITEM_SIZE_LIMIT

    def memory_limit(self) -> int | None:
        return None  # maxmemory is often 0 (no limit); chunk counts are bounded by MAX_PIECES

    def get(self, key: bytes) -> bytes | None:
        item: bytes | None = self._call(lambda: self._client.get(key), what="a read")
        return item

    def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        if not keys:
            return {}, []
        read = self._client.mget_nonatomic if self._cluster else self._client.mget
        items, failures = self._batch(keys, lambda: read(keys), "a read")
        if items is None:
            return {}, failures
        return {key: item for key, item in zip(keys, items, strict=True) if item is not None}, []

    def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        px = None if ttl is None else _ms(ttl)
        self._call(lambda: self._client.set(key, item, px=px), what="a write")

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        px = None if ttl is None else _ms(ttl)

        def write(pipe: Any) -> None:
            for key, item in items.items():
                pipe.set(key, item, px=px)

        return self._pipelined(items, write, transaction=False)

    def _pipelined(
        self, items: Mapping[bytes, bytes], write: Callable[[Any], None], *, transaction: bool
    ) -> list[Failure]:
        """Run ``write``'s commands for ``items`` in one pipeline (per node on a Cluster)."""
        if not items:
            return []

        def attempt() -> None:
            pipe = self._client.pipeline(transaction=transaction)
            write(pipe)
            pipe.execute()

        return self._batch(list(items), attempt, "a write")[1]

    def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        px = None if ttl is None else _ms(ttl)
        # A retry after a lost reply finds the key taken (by itself) and says False: the caller
        # of add() learns the key holds a value, which is so.
        return bool(self._call(lambda: self._client.set(key, item, nx=True, px=px), what="add"))

    def replace(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        px = None if ttl is None else _ms(ttl)
        return bool(self._call(lambda: self._client.set(key, item, xx=True, px=px), what="replace"))

    def gets(self, key: bytes) -> tuple[bytes | None, object | None]:
        item = self.get(key)
        return item, None if item is None else item_stamp(item)

    def cas(self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object) -> bool:
        if not isinstance(stamp, str):
            return False
        px: int | str = "keep" if ttl is KEEP_TTL else 0 if ttl is None else _ms(ttl)
        return bool(self._script("kv_cas.lua", key, stamp, item, px, what="cas") == 1)

    def append(self, key: bytes, data: bytes, prepend: bool) -> bool | None:
        op = "prepend" if prepend else "append"
        done = self._script("kv_append.lua", key, op, data, what=op)
        return None if done == -1 else done == 1

    def delete(self, key: bytes) -> bool:
        return bool(self._call(lambda: self._client.delete(key), what="a delete"))

    def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        if not keys:
            return []
        return self._batch(keys, lambda: self._client.delete(*keys), "a delete")[1]

    def touch(self, key: bytes, ttl: float | None) -> bool:
        def attempt() -> Any:
            if ttl is not None:
                return self._client.pexpire(key, _ms(ttl))
            pipe = self._client.pipeline(transaction=True)
            pipe.exists(key)
            pipe.persist(key)
            return pipe.execute()[0]

        return bool(self._call(attempt, what="touch"))

    def _count(self, op: str, key: bytes, delta: int, ttl: float | None) -> int:
        return int(
            self._script("kv_counter.lua", key, op, delta, 0 if ttl is None else _ms(ttl), what=op)
        )

    def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._count("incr", key, delta, ttl)

    def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._count("decr", key, delta, ttl)

    @staticmethod
    def _publish_commands(
        pipe: Any, key: bytes, item: bytes, px: int | None, wake_key: bytes
    ) -> None:
        pipe.set(key, item, px=px)
        pipe.delete(wake_key)
        pipe.rpush(wake_key, b"1")
        if px is not None:
            pipe.pexpire(wake_key, px)

    def publish(self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes) -> None:
        px = None if ttl is None else _ms(ttl)

        def attempt() -> None:
            pipe = self._client.pipeline(transaction=True)
            self._publish_commands(pipe, key, item, px, wake_key)
            pipe.execute()

        self._call(attempt, what="a result")

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> list[Failure]:
        px = None if ttl is None else _ms(ttl)
        if not self._cluster:

            def write(pipe: Any) -> None:
                for key, item in items.items():
                    self._publish_commands(pipe, key, item, px, wake_keys[key])

            # as publish(), in one MULTI: a waiter never sees a wake-up before its item
            return self._pipelined(items, write, transaction=True)
        # A MULTI stays within one slot on a Cluster: one per item (each item and its wake key
        # share a slot).
        failures: list[Failure] = []
        for key, item in items.items():
            try:
                self.publish(key, item, ttl, wake_keys[key])
            except BackendError as exc:
                failures.append(Failure(self.health.name, [key], exc))
        return failures

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
        while True:
            item: bytes | None = self._call(
                lambda: self._client.get(key), what="a read", wait_until=wait_until
            )
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
                    raise self._error(exc) from exc
            except _CLUSTER_ERRORS as exc:
                raise self._error(exc) from exc

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
            if self._waits is not self._client:
                self._waits.close()
