"""The Redis backend: lists for FIFO and LIFO queues, a sorted set for priority queues.

Every change that takes more than one command is one Lua script (``lua/*.lua``; see
:mod:`distqueue.backends.scripts`) that declares every key it touches in ``KEYS``. All keys of
one queue share the hash tag ``{name}``, so a Redis Cluster keeps them on one node (a name
that starts with ``}`` has its keys under ``dq!{=}name:`` instead)::

    dq:{name}:items       list (FIFO/LIFO; items enter at the left) or zset (priority)
    dq:{name}:meta        hash: counters and flags ("shutdown", "unfinished", ...; lib.lua)
    dq:{name}:notfull     list: token "there may be room" (blocked producers)
    dq:{name}:joined      list: token "no task is unfinished" (join)
    dq:{name}:avail       list: token "there may be an item" (blocked consumers)
    dq:{name}:shutdown    list: the shutdown token (everyone blocked)
    dq:{name}:leases      zset: lease token ("item id:stamp") -> deadline, server time in ms
    dq:{name}:payloads    hash: item id -> raw value of a leased, redelivered or dead item
    dq:{name}:deliveries  hash: item id -> times delivered
    dq:{name}:dead        list: item ids of dead letters, newest at the left
    dq:{name}:errors      hash: item id -> why it is a dead letter
    dq:{name}:r:ID        string: the reply of the call with request id ID, for a retry (60 s)

**Retries.** Every call that changes state carries a request id, and a retry of it returns the
first outcome (scripts.py); calls are retried by :class:`~.connection.Retrier`, never by
redis-py, so a lost reply never runs a change twice.

**Waiting** is a blocking Redis command (BLPOP) on token lists, never polling: a consumer waits
on ``avail`` and ``shutdown``, then takes its item with a script, so an item is never in
flight on a reply that could be lost. A blocking command waits at most ``BLOCK_SLICE`` seconds
at a time, so that a dead connection is noticed, and a timeout is never sent as 0 (Redis reads 0
as "forever"). Token lists hold at most one token, handed on by whoever takes it; a stale token
costs one extra look, never a wrong answer. A consumer also wakes when the earliest lease runs
out, since its item then comes back.

Errors of redis-py are translated here: connection failures to ``BackendConnectionError`` (or
``OutcomeUnknownError``), WRONGTYPE to ``WrongTypeError`` naming the key.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions

from ..errors import (
    AuthenticationError,
    BackendError,
    DeserializationError,
    Empty,
    Full,
    ShutDown,
    WrongTypeError,
)
from ..ordering import sort_key
from ..serializers import Serializer
from . import connection as _connection
from .base import DeadLetter, Deadline, Kind, Lease
from .connection import RedisOptions, Retrier
from .scripts import RequestIds, Script

logger = logging.getLogger("distqueue.redis")

T = TypeVar("T")


_SHUT_DOWN = -1
_NONE_LEASED = -2
_TOO_LITTLE_ROOM = -3
_BATCH_BACKOFF_MIN = 0.01
_BATCH_BACKOFF_MAX = 0.5
_BATCH_LOOK_AGAIN = 1.0  # well within BATCH_STALE_MS of lua/lib.lua
_BLOCK_ERROR_PAUSE = 0.05


def key_prefix(name: str) -> str:
    """The start of every key of the structure called ``name``: ``dq:{name}:``, whose hash tag
    keeps all of them in one Cluster slot."""
    if name.startswith("}"):
        # "{}" is no hash tag: Redis would hash each whole key, spreading the keys over slots.
        # Such names live under "dq!", with the tag "=" (a namespace of their own).
        return f"dq!{{=}}{name}:"
    return f"dq:{{{name}}}:"


class QueueKeys:
    """The names of one queue's keys (``types``: each key and the Redis type it holds)."""

    def __init__(self, name: str, kind: Kind) -> None:
        prefix = key_prefix(name)
        self.items = prefix + "items"
        self.meta = prefix + "meta"
        self.notfull = prefix + "notfull"
        self.joined = prefix + "joined"
        self.avail = prefix + "avail"
        self.shutdown = prefix + "shutdown"
        self.leases = prefix + "leases"
        self.payloads = prefix + "payloads"
        self.deliveries = prefix + "deliveries"
        self.dead = prefix + "dead"
        self.errors = prefix + "errors"
        self.reply = prefix + "r:"  # + a request id
        self.types = {
            self.items: "zset" if kind is Kind.PRIORITY else "list",
            self.meta: "hash",
            self.notfull: "list",
            self.joined: "list",
            self.avail: "list",
            self.shutdown: "list",
            self.leases: "zset",
            self.payloads: "hash",
            self.deliveries: "hash",
            self.dead: "list",
            self.errors: "hash",
        }


def _block_slice(client: Any) -> float:
    """The longest one blocking command may wait on ``client`` without its socket timing out."""
    pool = getattr(client, "connection_pool", None)  # a RedisCluster has one per node
    socket_timeout = None if pool is None else pool.connection_kwargs.get("socket_timeout")
    if not isinstance(socket_timeout, (int, float)):
        return _connection.BLOCK_SLICE
    return max(0.05, min(_connection.BLOCK_SLICE, socket_timeout - 1.0, socket_timeout / 2))


class RedisBackend:
    """Redis storage for one queue; see :class:`distqueue.backends.base.QueueBackend`.

    ``client`` runs commands and ``waits`` runs blocking commands (its socket timeout must
    exceed a blocking slice; ``None``: ``client`` itself, with slices that fit its timeout).
    ``owns_client``: whether :meth:`close` closes them.
    """

    shared = True
    copies_items = True

    def __init__(
        self,
        client: Any,
        name: str,
        kind: Kind,
        serializer: Serializer,
        *,
        owns_client: bool = True,
        waits: Any = None,
        options: RedisOptions | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self._owns_client = owns_client
        self._client = client
        self._waits = waits if waits is not None else client
        self._slice = _connection.BLOCK_SLICE if waits is not None else _block_slice(client)
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._priority = kind is Kind.PRIORITY
        self._kind_arg = kind.value
        self._retrier = Retrier(options or RedisOptions(), f"queue {name!r}")
        self._request_id = RequestIds()
        k = self.keys = QueueKeys(name, kind)

        def script(name: str, *keys: str) -> Script:
            return Script(client, name, keys)

        def retry_safe(name: str, *keys: str) -> Script:
            return Script(client, name, keys, retry_safe=True)

        self._put_script = retry_safe(
            "put_priority.lua" if self._priority else "put_list.lua",
            k.items,
            k.meta,
            k.notfull,
            k.joined,
            k.avail,
        )
        self._take_script = retry_safe(
            "take.lua",
            k.items,
            k.meta,
            k.notfull,
            k.joined,
            k.avail,
            k.leases,
            k.payloads,
            k.deliveries,
            k.dead,
            k.errors,
        )
        self._task_done_script = retry_safe("task_done.lua", k.meta, k.joined)
        self._shutdown_script = retry_safe(
            "shutdown.lua", k.items, k.meta, k.joined, k.shutdown, k.payloads, k.deliveries
        )
        self._ack_script = retry_safe(
            "ack.lua", k.items, k.meta, k.joined, k.leases, k.payloads, k.deliveries
        )
        self._nack_script = retry_safe("nack.lua", k.items, k.avail, k.leases, k.payloads)
        self._extend_script = retry_safe("extend.lua", k.leases)
        self._dead_script = retry_safe(
            "dead.lua",
            k.items,
            k.meta,
            k.joined,
            k.leases,
            k.payloads,
            k.deliveries,
            k.dead,
            k.errors,
        )
        self._dead_requeue_script = retry_safe(
            "dead_requeue.lua",
            k.items,
            k.meta,
            k.joined,
            k.avail,
            k.payloads,
            k.deliveries,
            k.dead,
            k.errors,
        )
        self._dead_purge_script = retry_safe(
            "dead_purge.lua", k.payloads, k.deliveries, k.dead, k.errors
        )
        # Idempotent by nature: retried as they are.
        self._size_script = script("size.lua", k.items, k.leases, k.payloads)
        self._signal_script = script("signal.lua", k.meta, k.shutdown)
        self._join_check_script = script("join_check.lua", k.meta, k.joined)
        others = [key for key in k.types if key not in (k.notfull, k.joined)]
        self._delete_script = script("delete.lua", k.notfull, k.joined, *others)

    # -- running commands ------------------------------------------------------------------

    def _run(self, script: Script, *args: Any, what: str, wait_until: float | None = 0.0) -> Any:
        """Run a retry-safe script under one request id, retried until it answers."""
        request = self.keys.reply + self._request_id()
        return self._attempt(
            lambda: script(request, *args), what=what, changes=True, wait_until=wait_until
        )

    def _read(self, attempt: Callable[[], T], *, what: str, wait_until: float | None = 0.0) -> T:
        """Run a call that changes nothing a retry could double."""
        return self._attempt(attempt, what=what, changes=False, wait_until=wait_until)

    def _attempt(
        self,
        attempt: Callable[[], T],
        *,
        what: str,
        changes: bool,
        wait_until: float | None,
    ) -> T:
        try:
            return self._retrier.run(attempt, what=what, changes=changes, wait_until=wait_until)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise self._translate(exc) from exc

    def _block(self, keys: list[str], seconds: float) -> bytes | None:
        """Wait up to ``seconds`` on token lists; the key whose token was taken, or ``None``.

        A failed wait counts as a quiet one, after a short pause: the caller's next script
        call retries the connection, within the caller's own limits.
        """
        try:
            woke = self._waits.blpop(keys, seconds)
        except _connection.RETRYABLE:
            time.sleep(min(_BLOCK_ERROR_PAUSE, seconds))
            return None
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("UNBLOCKED"):
                raise self._translate(exc) from exc
            # The server stopped being the master while we waited on it; the next wait is
            # refused there (READONLY, a write), which sends the client to the new master.
            return None
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise self._translate(exc) from exc
        return None if woke is None else bytes(woke[0])

    def _translate(
        self, exc: redis.exceptions.RedisError | redis.exceptions.RedisClusterException
    ) -> Exception:
        """The exception for an error of redis-py (raise it ``from exc``)."""
        if isinstance(exc, redis.exceptions.ResponseError) and "WRONGKIND" in str(exc):
            found = re.search(r"is an? (\w+) queue", str(exc))
            return ValueError(
                f"queue {self.name!r} already exists on this server as a "
                f"{found.group(1) if found else 'different'} queue, not a {self.kind.value} "
                "queue: open it with the class of its kind"
            )
        if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in str(exc):
            return self._wrong_type_error(exc)
        if isinstance(
            exc,
            (
                redis.exceptions.AuthenticationError,
                redis.exceptions.AuthorizationError,
                redis.exceptions.NoPermissionError,
            ),
        ):
            return AuthenticationError(
                f"Redis server for queue {self.name!r} refused the credentials: {exc}"
            )
        return BackendError(f"Redis failed a command for queue {self.name!r}: {exc}")

    def _wrong_type_error(self, exc: Exception) -> WrongTypeError:
        try:
            for key, expected in self.keys.types.items():
                actual = self._client.type(key)
                actual_name = actual.decode() if isinstance(actual, bytes) else str(actual)
                if actual_name not in ("none", expected):
                    return WrongTypeError(
                        f"key {key!r} of queue {self.name!r} holds a {actual_name}, "
                        f"where distqueue keeps a {expected}",
                        key=key,
                    )
        except redis.exceptions.RedisError:
            pass  # the original error below is still the one worth reporting
        return WrongTypeError(f"a key of queue {self.name!r} has the wrong type: {exc}")

    def _wait_time(self, deadline: Deadline, cap: float | None = None) -> float | None:
        """Seconds for the next blocking command, or ``None`` when the deadline has passed."""
        if cap is None or cap > self._slice:
            cap = self._slice
        remaining = deadline.remaining()
        if remaining is None:
            return cap
        if remaining < _connection.MIN_BLOCK:
            return None
        return min(remaining, cap)

    def _after_shutdown_token(self) -> None:
        """Hand the shutdown token on to the next blocked client."""
        self._read(self._signal_script, what="a shutdown wake-up")

    # -- encoding --------------------------------------------------------------------------

    def _payload(self, raw: bytes) -> bytes:
        """The payload inside a stored value (a sorted-set member carries more)."""
        if self._priority and len(raw) >= 24:
            try:
                key_length = int(raw[-8:], 16)
            except ValueError:  # not a member distqueue wrote; decoding it will fail
                return raw
            if key_length + 24 <= len(raw):
                return raw[key_length + 16 : -8]
        return raw

    def _decode_one(self, raw: bytes) -> Any:
        """Decode a stored value; ``ValueError`` (any kind) if it cannot be."""
        payload = self._payload(raw) if self._priority else raw
        return self._loads(payload)

    def _decode(self, raws: list[bytes]) -> list[Any]:
        """Decode stored values taken without a lease; undecodable ones become dead letters."""
        if not self._priority:
            try:
                return [self._loads(raw) for raw in raws]
            except Exception:  # one of them is bad: sort them out one by one below
                pass
        items: list[Any] = []
        bad: list[bytes] = []
        errors: list[Exception] = []
        for raw in raws:
            try:
                items.append(self._decode_one(raw))
            # Whatever a serializer raises, the payload is unusable: it is kept as a dead
            # letter, never dropped.
            except Exception as exc:
                bad.append(raw)
                errors.append(exc)
        if bad:
            self._bury("raw", bad, errors[0])
            if not items:
                raise self._undecodable(bad[0], errors[0]) from errors[0]
        return items

    def _bury(self, mode: str, values: list[Any], error: Exception) -> None:
        # A payload this queue's serializer cannot read was not put by its producers (or by
        # producers with another serializer): it was never counted, so it does not count as
        # done either.
        text = f"could not be decoded by the {self._serializer.name} serializer: {error}"
        self._run(self._dead_script, mode, "0", text, *values, what="a dead letter")
        logger.error(
            "queue %r: %d item(s) could not be decoded and became dead letters: %s",
            self.name,
            len(values),
            error,
        )

    def _undecodable(self, raw: bytes, error: Exception) -> DeserializationError:
        return DeserializationError(
            f"queue {self.name!r}: an item could not be decoded by the "
            f"{self._serializer.name} serializer ({error}); it was kept as a dead letter",
            queue=self.name,
            payload=self._payload(raw),
        )

    # -- putting ---------------------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        payload = self._dumps(item)
        if self._priority:
            key = sort_key(item)
            self._put([self._kind_arg, maxsize, "", key, payload + b"%08x" % len(key)], timeout)
        else:
            self._put([self._kind_arg, maxsize, "", payload], timeout)

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        if not items:
            if self.is_shutdown():
                raise ShutDown
            return
        dumps = self._dumps
        # a batch's ticket: its place in line while it waits for room (see lua/lib.lua)
        args: list[Any] = [self._kind_arg, maxsize, self._request_id() if len(items) > 1 else ""]
        if self._priority:
            for item in items:
                payload = dumps(item)
                key = sort_key(item)
                args.append(key)
                args.append(payload + b"%08x" % len(key))
        else:
            args.extend([dumps(item) for item in items])
        self._put(args, timeout)

    def _put(self, args: list[Any], timeout: float | None) -> None:
        deadline = Deadline(timeout)
        waits = timeout is None or timeout > 0
        # A put rides out an outage only once it is waiting for room, as far as its timeout.
        wait_until: float | None = 0.0
        backoff = _BATCH_BACKOFF_MIN / 2
        k = self.keys
        while True:
            result = self._run(self._put_script, *args, what="a put", wait_until=wait_until)
            if result >= 0:
                return
            if result == _SHUT_DOWN:
                raise ShutDown
            if not waits:
                raise Full
            wait_until = deadline.at
            if result == _TOO_LITTLE_ROOM:
                # A batch that does not fit yet while smaller puts could: the script left the
                # room token for them; this batch looks again after a back-off (a wait that a
                # shutdown still ends at once).
                backoff = min(backoff * 2, _BATCH_BACKOFF_MAX)
                wait = self._wait_time(deadline, backoff)
                keys = [k.shutdown]
            else:
                # a batch holds its place in line only while it looks again often enough
                wait = self._wait_time(deadline, _BATCH_LOOK_AGAIN if args[2] else None)
                keys = [k.notfull, k.shutdown]
            if wait is None:
                raise Full
            if self._block(keys, wait) == k.shutdown.encode():
                self._after_shutdown_token()

    # -- getting ---------------------------------------------------------------------------

    def get(self, timeout: float | None) -> Any:
        return self.get_many(1, timeout)[0]

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        return self._decode(self._take(n, timeout, 0, 0))

    def _take(self, n: int, timeout: float | None, lease_ms: int, max_deliveries: int) -> list[Any]:
        """Take up to ``n`` items (leased when ``lease_ms``), waiting for the first; their raw
        values (with leases: token, raw value, deliveries, ...)."""
        k = self.keys
        deadline = Deadline(timeout)
        waits = timeout is None or timeout > 0
        what = "a get" if lease_ms == 0 else "a lease"
        while True:
            result = self._run(
                self._take_script,
                self._kind_arg,
                n,
                lease_ms,
                max_deliveries,
                what=what,
                wait_until=deadline.at if waits else 0.0,
            )
            if isinstance(result, list):
                return result
            if result == _SHUT_DOWN:
                raise ShutDown
            if not waits:
                raise Empty
            # Wake for a new item, a shutdown, or the earliest lease running out.
            cap = None if result == _NONE_LEASED else result / 1000
            wait = self._wait_time(deadline, cap)
            if wait is None:
                raise Empty
            if self._block([k.avail, k.shutdown], wait) == k.shutdown.encode():
                self._after_shutdown_token()

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> int:
        return int(self._read(lambda: self._size_script(self._kind_arg), what="qsize()"))

    def task_done(self) -> None:
        if self._run(self._task_done_script, what="task_done()") < 0:
            raise ValueError("task_done() called too many times")

    def join(self, timeout: float | None) -> bool:
        deadline = Deadline(timeout)
        while True:
            if self._read(self._join_check_script, what="join()", wait_until=deadline.at) == 1:
                return True
            wait = self._wait_time(deadline)
            if wait is None:
                return False
            self._block([self.keys.joined], wait)

    def unfinished_tasks(self) -> int:
        value = self._read(
            lambda: self._client.hget(self.keys.meta, "unfinished"), what="unfinished_tasks"
        )
        return int(value or 0)

    def shutdown(self, immediate: bool) -> None:
        self._run(
            self._shutdown_script, self._kind_arg, "1" if immediate else "0", what="shutdown()"
        )

    def is_shutdown(self) -> bool:
        return bool(
            self._read(lambda: self._client.hexists(self.keys.meta, "shutdown"), what="is_shutdown")
        )

    def delete(self) -> None:
        self._read(self._delete_script, what="delete()")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
            if self._waits is not self._client:
                self._waits.close()

    # -- leases ----------------------------------------------------------------------------

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        result = self._take(n, timeout, max(1, round(lease_seconds * 1000)), max_deliveries)
        leases: list[Lease] = []
        bad: list[tuple[str, bytes, Exception]] = []
        for i in range(0, len(result), 3):
            token = result[i].decode()
            raw = result[i + 1]
            try:
                item = self._decode_one(raw)
            # Whatever a serializer raises, the payload is unusable: a dead letter.
            except Exception as exc:
                bad.append((token, raw, exc))
                continue
            leases.append(Lease(token, item, int(result[i + 2])))
        if bad:
            self._bury(self._kind_arg, [token for token, _, _ in bad], bad[0][2])
            if not leases:
                raise self._undecodable(bad[0][1], bad[0][2]) from bad[0][2]
        return leases

    def ack(self, ids: Sequence[str]) -> int:
        return int(self._run(self._ack_script, self._kind_arg, *ids, what="an ack"))

    def nack(self, ids: Sequence[str], delay: float) -> int:
        return int(
            self._run(
                self._nack_script,
                self._kind_arg,
                max(0, round(delay * 1000)),
                *ids,
                what="a nack",
            )
        )

    def bury(self, ids: Sequence[str], error: str) -> int:
        if not ids:
            return 0
        return int(self._run(self._dead_script, self._kind_arg, "1", error, *ids, what="a reject"))

    def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        return int(
            self._run(
                self._extend_script,
                max(1, round(lease_seconds * 1000)),
                *ids,
                what="a lease extension",
            )
        )

    def in_flight(self) -> int:
        return int(self._read(lambda: self._client.zcard(self.keys.leases), what="in_flight()"))

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        k = self.keys

        def read() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
            ids = self._client.lrange(k.dead, -limit, -1)[::-1]  # oldest first
            if not ids:
                return [], [], [], []
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(k.payloads, ids)
            pipe.hmget(k.deliveries, ids)
            pipe.hmget(k.errors, ids)
            raws, counts, errors = pipe.execute()
            return ids, raws, counts, errors

        ids, raws, counts, errors = self._read(read, what="dead_letters()")
        letters = []
        for lease_id, raw, count, error in zip(ids, raws, counts, errors, strict=True):
            if raw is None:
                continue
            try:
                item = self._decode_one(raw)
            except Exception:  # undecodable dead letters are listed with item None
                item = None
            letters.append(
                DeadLetter(
                    id=lease_id.decode() if isinstance(lease_id, bytes) else str(lease_id),
                    item=item,
                    payload=self._payload(raw),
                    deliveries=int(count or 0),
                    error=(error or b"").decode("utf-8", "replace"),
                )
            )
        return letters

    def requeue_dead(self, limit: int) -> int:
        return int(
            self._run(self._dead_requeue_script, self._kind_arg, limit, what="requeue_dead()")
        )

    def purge_dead(self, limit: int) -> int:
        return int(self._run(self._dead_purge_script, limit, what="purge_dead()"))
