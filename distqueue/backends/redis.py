"""The Redis backend: lists for FIFO and LIFO queues, a sorted set for priority queues.

Every change that takes more than one command is one Lua script (``lua/*.lua``, each prefixed
with ``lua/lib.lua`` when loaded) that declares every key it touches in ``KEYS``. All keys of
one queue share the hash tag ``{name}``, so a Redis Cluster keeps them on one node::

    dq:{name}:items       list (FIFO/LIFO; items enter at the left) or zset (priority)
    dq:{name}:meta        hash: counters and flags ("shutdown", "unfinished", ...; lib.lua)
    dq:{name}:notfull     list: token "there may be room" (blocked producers)
    dq:{name}:joined      list: token "no task is unfinished" (join)
    dq:{name}:avail       list: token "there may be an item" (consumers that lease)
    dq:{name}:shutdown    list: the shutdown token (producers, join, list consumers)
    dq:{name}:shutdownz   zset: the shutdown token (priority consumers)
    dq:{name}:leases      zset: lease id -> deadline, server time in ms
    dq:{name}:payloads    hash: lease id -> raw value of a leased or dead item
    dq:{name}:deliveries  hash: lease id -> times delivered
    dq:{name}:dead        list: lease ids of dead letters, newest at the left
    dq:{name}:errors      hash: lease id -> why it is a dead letter

Waiting is a blocking Redis command (BRPOP, BLPOP, BZPOPMIN) on the key that will change,
never polling. A blocking command waits at most ``BLOCK_SLICE`` seconds at a time, so that a
connection that died silently is noticed, and a timeout is never sent as 0 (Redis reads 0 as
"forever"). Token lists hold at most one token, handed on by whoever takes it, so every waiter
wakes; a stale token costs one extra check, never a wrong answer.

Errors of redis-py are translated here: connection failures (after redis-py's bounded retry)
to ``BackendConnectionError``, WRONGTYPE to ``WrongTypeError`` naming the key.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
import redis.exceptions

from ..errors import (
    BackendConnectionError,
    BackendError,
    DeserializationError,
    Empty,
    Full,
    ShutDown,
    WrongTypeError,
)
from ..ordering import sort_key
from ..serializers import Serializer
from .base import DeadLetter, Deadline, Kind, Lease

logger = logging.getLogger("distqueue.redis")

BLOCK_SLICE = 5.0
"""The longest a single blocking command waits, in seconds; longer waits are several."""

_MIN_BLOCK = 0.001  # Redis blocks with millisecond resolution; never send 0 ("forever").

_SHUT_DOWN = -1
_TOO_LITTLE_ROOM = -3
_BATCH_BACKOFF_MIN = 0.01
_BATCH_BACKOFF_MAX = 0.5
_NONE_LEASED = -2

REF_PREFIX = b"\x00dq:ref:"
"""How a redelivered item's stored value starts (see lua/lib.lua)."""


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text("utf-8")


def _script_source(name: str) -> str:
    """A script with the definitions of lib.lua it uses (and what those use) put before it.

    Only what is used is included: Lua builds every local function anew on each run.
    """
    body = _lua(name)
    definitions = {
        match.group(1): block
        for block in re.split(r"\n(?=local )", _lua("lib.lua"))
        if (match := re.match(r"local (?:function )?(\w+)", block))
    }
    needed: list[str] = []
    pending = [body]
    while pending:
        text = pending.pop()
        for symbol, block in definitions.items():
            if symbol not in needed and re.search(rf"\b{symbol}\b", text):
                needed.append(symbol)
                pending.append(block)
    ordered = [block for symbol, block in definitions.items() if symbol in needed]
    return "\n".join([*ordered, body])


def _resp(arg: bytes | str | int) -> bytes:
    """One argument of a command in the Redis protocol (RESP)."""
    data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Script:
    """A Lua script run by EVALSHA with its keys bound; loaded again if the server forgot it
    (after a restart, or SCRIPT FLUSH).

    With a plain ``redis.Redis`` client the fixed part of the command (EVALSHA, the script's
    hash, its keys) is encoded once, and each call writes only its own arguments: packing ten
    arguments anew cost more than the server spends running the script. Connections, retries
    and errors stay redis-py's. Any other client (fakeredis, a subclass) goes through
    ``execute_command``.
    """

    __slots__ = ("_argc", "_client", "_execute", "_fast", "_packed", "_prefix", "_source")

    def __init__(self, client: redis.Redis, name: str, keys: Sequence[str]) -> None:
        self._client = client
        self._execute: Any = client.execute_command
        self._source = _script_source(name)
        sha = hashlib.sha1(self._source.encode("utf-8")).hexdigest()
        self._prefix: tuple[str | int, ...] = ("EVALSHA", sha, len(keys), *keys)
        self._packed = b"".join(_resp(part) for part in self._prefix)
        self._argc = len(self._prefix)
        self._fast = type(client) is redis.Redis and _plain_resp2(client)

    def __call__(self, *args: Any) -> Any:
        try:
            if self._fast:
                return self._call_packed(args)
            return self._execute(*self._prefix, *args)
        except redis.exceptions.NoScriptError:
            self._client.script_load(self._source)
            return self._execute(*self._prefix, *args)

    def _call_packed(self, args: tuple[Any, ...]) -> Any:
        command = b"".join(
            [b"*%d\r\n" % (self._argc + len(args)), self._packed, *[_resp(a) for a in args]]
        )
        pool = self._client.connection_pool
        connection = pool.get_connection()
        try:
            return connection.retry.call_with_retry(
                lambda: _send(connection, command),
                lambda _error: connection.disconnect(),  # type: ignore[no-untyped-call]
            )
        finally:
            pool.release(connection)


def _send(connection: Any, command: bytes) -> Any:
    connection.send_packed_command([command])
    return connection.read_response()


def _plain_resp2(client: redis.Redis) -> bool:
    """Whether the client's connections are redis-py's own, speaking RESP2 without extras."""
    kwargs = client.connection_pool.connection_kwargs
    connection_class = client.connection_pool.connection_class
    return (
        connection_class
        in (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)
        and kwargs.get("protocol") in (None, 2, "2")
        and not kwargs.get("cache")
        and client.connection is None
    )


class _Keys:
    """The names of one queue's keys."""

    def __init__(self, name: str, kind: Kind) -> None:
        prefix = f"dq:{{{name}}}:"
        self.items = prefix + "items"
        self.meta = prefix + "meta"
        self.notfull = prefix + "notfull"
        self.joined = prefix + "joined"
        self.avail = prefix + "avail"
        self.shutdown = prefix + "shutdown"
        self.shutdownz = prefix + "shutdownz"
        self.leases = prefix + "leases"
        self.payloads = prefix + "payloads"
        self.deliveries = prefix + "deliveries"
        self.dead = prefix + "dead"
        self.errors = prefix + "errors"
        self.types = {
            self.items: "zset" if kind is Kind.PRIORITY else "list",
            self.meta: "hash",
            self.notfull: "list",
            self.joined: "list",
            self.avail: "list",
            self.shutdown: "list",
            self.shutdownz: "zset",
            self.leases: "zset",
            self.payloads: "hash",
            self.deliveries: "hash",
            self.dead: "list",
            self.errors: "hash",
        }


class RedisBackend:
    """Redis storage for one queue; see :class:`distqueue.backends.base.QueueBackend`."""

    shared = True
    copies_items = True

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        kind: Kind,
        serializer: Serializer,
        *,
        owns_client: bool = True,
    ) -> None:
        self.name = name
        self.kind = kind
        self._owns_client = owns_client
        self._client = client
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._priority = kind is Kind.PRIORITY
        self._kind_arg = kind.value
        k = self.keys = _Keys(name, kind)

        def script(name: str, *keys: str) -> _Script:
            return _Script(client, name, keys)

        self._put_script = script(
            "put_priority.lua" if self._priority else "put_list.lua",
            k.items,
            k.meta,
            k.notfull,
            k.joined,
            k.avail,
        )
        self._pop_script = script("pop.lua", k.items, k.meta, k.notfull, k.payloads, k.deliveries)
        self._resolve_script = script("resolve.lua", k.payloads, k.deliveries)
        self._signal_script = script("signal.lua", k.meta, k.notfull, k.shutdown, k.shutdownz)
        self._task_done_script = script("task_done.lua", k.meta, k.joined)
        self._join_check_script = script("join_check.lua", k.meta, k.joined)
        self._shutdown_script = script(
            "shutdown.lua",
            k.items,
            k.meta,
            k.joined,
            k.shutdown,
            k.shutdownz,
            k.payloads,
            k.deliveries,
        )
        self._lease_script = script(
            "lease.lua",
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
        self._ack_script = script(
            "ack.lua", k.items, k.meta, k.joined, k.leases, k.payloads, k.deliveries
        )
        self._nack_script = script("nack.lua", k.items, k.avail, k.leases, k.payloads)
        self._extend_script = script("extend.lua", k.leases)
        self._dead_script = script(
            "dead.lua", k.meta, k.joined, k.leases, k.payloads, k.deliveries, k.dead, k.errors
        )
        self._dead_requeue_script = script(
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
        self._dead_purge_script = script(
            "dead_purge.lua", k.payloads, k.deliveries, k.dead, k.errors
        )

        self._blocking_pop: Any
        if kind is Kind.FIFO:
            self._blocking_pop = client.brpop
        elif kind is Kind.LIFO:
            self._blocking_pop = client.blpop
        else:
            self._blocking_pop = client.bzpopmin
        self._wait_keys = [k.items, k.shutdownz if self._priority else k.shutdown]
        self._wait_shutdown_key = self._wait_keys[1].encode()

    # -- errors ----------------------------------------------------------------------------

    def _translate(self, exc: redis.exceptions.RedisError) -> Exception:
        """The distqueue exception for an error of redis-py (raise it ``from exc``)."""
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return BackendConnectionError(
                f"Redis server for queue {self.name!r} is unreachable: {exc}"
            )
        if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in str(exc):
            return self._wrong_type_error(exc)
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

    def _call(self, script: _Script, *args: Any) -> Any:
        try:
            return script(*args)
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

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
        text = f"could not be decoded by the {self._serializer.name} serializer: {error}"
        self._dead(mode, values, text)
        logger.error(
            "queue %r: %d item(s) could not be decoded and became dead letters: %s",
            self.name,
            len(values),
            error,
        )

    def _dead(self, mode: str, values: Sequence[Any], text: str) -> int:
        return int(self._call(self._dead_script, mode, text, *values))

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
            self._put([maxsize, key, payload + b"%08x" % len(key)], maxsize, timeout)
        else:
            self._put([maxsize, payload], maxsize, timeout)

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        if not items:
            if self.is_shutdown():
                raise ShutDown
            return
        dumps = self._dumps
        args: list[Any] = [maxsize]
        if self._priority:
            for item in items:
                payload = dumps(item)
                key = sort_key(item)
                args.append(key)
                args.append(payload + b"%08x" % len(key))
        else:
            args.extend([dumps(item) for item in items])
        self._put(args, maxsize, timeout)

    def _put(self, args: list[Any], maxsize: int, timeout: float | None) -> None:
        deadline: Deadline | None = None
        backoff = _BATCH_BACKOFF_MIN / 2
        try:
            while True:
                result = self._put_script(*args)
                if result >= 0:
                    return
                if result == _SHUT_DOWN:
                    raise ShutDown
                if deadline is None:
                    if timeout is not None and timeout <= 0:
                        raise Full
                    deadline = Deadline(timeout)
                if result == _TOO_LITTLE_ROOM:
                    # A batch that does not fit yet while smaller puts could: the script left
                    # the room token for them; this batch looks again after a back-off
                    # (a wait that a shutdown still ends at once).
                    backoff = min(backoff * 2, _BATCH_BACKOFF_MAX)
                    wait = self._wait_time(deadline, backoff)
                    keys = [self.keys.shutdown]
                else:
                    wait = self._wait_time(deadline)
                    keys = [self.keys.notfull, self.keys.shutdown]
                if wait is None:
                    raise Full
                woke = self._client.blpop(keys, wait)
                if woke is not None and woke[0] == self.keys.shutdown.encode():
                    self._signal("shutdown")
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    # -- getting ---------------------------------------------------------------------------

    def get(self, timeout: float | None) -> Any:
        return self.get_many(1, timeout)[0]

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        try:
            popped = self._pop_script(self._kind_arg, n)
            if popped == _SHUT_DOWN:
                raise ShutDown
            if not popped:
                if timeout is not None and timeout <= 0:
                    raise Empty
                popped = [self._wait_for_item(Deadline(timeout), signal=n == 1)]
                if n > 1:
                    more = self._pop_script(self._kind_arg, n - 1)
                    if isinstance(more, list) and more:
                        popped.extend(more)
                    else:
                        self._signal("room")
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
        return self._decode(popped)

    def _wait_for_item(self, deadline: Deadline, signal: bool = True) -> bytes:
        """Block until an item can be taken; take it and return its raw value."""
        while True:
            wait = self._wait_time(deadline)
            if wait is None:
                raise Empty
            woke = self._blocking_pop(self._wait_keys, wait)
            if woke is None:
                # A quiet slice: look once without blocking, so that a shutdown whose token
                # was lost (its taker died before handing it on) is still seen.
                popped = self._pop_script(self._kind_arg, 1)
                if popped == _SHUT_DOWN:
                    raise ShutDown
                if not popped:
                    continue
                return bytes(popped[0])
            if woke[0] == self._wait_shutdown_key:
                self._signal("shutdown")
                raise ShutDown
            if signal:
                self._signal("room")
            raw = woke[1]
            assert isinstance(raw, bytes)  # the client does not decode responses
            payload = self._payload(raw) if self._priority else raw
            if payload.startswith(REF_PREFIX):
                # a redelivered item's reference: take its raw value (acknowledged: next one)
                lease_id = payload[len(REF_PREFIX) :].decode()
                raw = self._resolve_script(lease_id)
                if raw is None:
                    continue
            return bytes(raw)

    @staticmethod
    def _wait_time(deadline: Deadline, cap: float | None = None) -> float | None:
        """Seconds for the next blocking command, or ``None`` when the deadline has passed."""
        if cap is None:
            cap = BLOCK_SLICE
        remaining = deadline.remaining()
        if remaining is None:
            return cap
        if remaining < _MIN_BLOCK:
            return None
        return min(remaining, cap)

    def _signal(self, what: str) -> int:
        return int(self._signal_script(what))

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> int:
        try:
            if self._priority:
                return int(self._client.zcard(self.keys.items))
            return int(self._client.llen(self.keys.items))
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def task_done(self) -> None:
        result = self._call(self._task_done_script)
        if result < 0:
            raise ValueError("task_done() called too many times")

    def join(self, timeout: float | None) -> bool:
        deadline = Deadline(timeout)
        try:
            while True:
                if self._join_check_script() == 1:
                    return True
                wait = self._wait_time(deadline)
                if wait is None:
                    return False
                self._client.blpop([self.keys.joined], wait)
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def unfinished_tasks(self) -> int:
        try:
            value = self._client.hget(self.keys.meta, "unfinished")
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
        return int(value or 0)

    def shutdown(self, immediate: bool) -> None:
        self._call(self._shutdown_script, self._kind_arg, "1" if immediate else "0")

    def is_shutdown(self) -> bool:
        try:
            return bool(self._client.hexists(self.keys.meta, "shutdown"))
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def delete(self) -> None:
        try:
            self._client.delete(*self.keys.types)
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- leases ----------------------------------------------------------------------------

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        args: list[str | int] = [
            self._kind_arg,
            max(1, round(lease_seconds * 1000)),
            max_deliveries,
            n,
        ]
        deadline: Deadline | None = None
        try:
            while True:
                result = self._lease_script(*args)
                if isinstance(result, list):
                    return self._leases_from(result)
                if result == _SHUT_DOWN:
                    raise ShutDown
                if deadline is None:
                    if timeout is not None and timeout <= 0:
                        raise Empty
                    deadline = Deadline(timeout)
                # Wake for a new item, a shutdown, or the earliest lease running out.
                cap = BLOCK_SLICE if result == _NONE_LEASED else min(BLOCK_SLICE, result / 1000)
                wait = self._wait_time(deadline, cap)
                if wait is None:
                    raise Empty
                woke = self._client.blpop([self.keys.avail, self.keys.shutdown], wait)
                if woke is not None and woke[0] == self.keys.shutdown.encode():
                    self._signal("shutdown")
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def _leases_from(self, result: list[Any]) -> list[Lease]:
        leases: list[Lease] = []
        bad: list[tuple[str, bytes, Exception]] = []
        for i in range(0, len(result), 3):
            lease_id = result[i].decode()
            raw = result[i + 1]
            try:
                item = self._decode_one(raw)
            # Whatever a serializer raises, the payload is unusable: a dead letter.
            except Exception as exc:
                bad.append((lease_id, raw, exc))
                continue
            leases.append(Lease(lease_id, item, int(result[i + 2])))
        if bad:
            self._bury("ids", [lease_id for lease_id, _, _ in bad], bad[0][2])
            if not leases:
                raise self._undecodable(bad[0][1], bad[0][2]) from bad[0][2]
        return leases

    def ack(self, ids: Sequence[str]) -> int:
        return int(self._call(self._ack_script, self._kind_arg, *ids))

    def nack(self, ids: Sequence[str], delay: float) -> int:
        return int(self._call(self._nack_script, self._kind_arg, max(0, round(delay * 1000)), *ids))

    def bury(self, ids: Sequence[str], error: str) -> int:
        return self._dead("ids", ids, error) if ids else 0

    def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        return int(self._call(self._extend_script, max(1, round(lease_seconds * 1000)), *ids))

    def in_flight(self) -> int:
        try:
            return int(self._client.zcard(self.keys.leases))
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        k = self.keys
        try:
            ids = self._client.lrange(k.dead, -limit, -1)[::-1]  # oldest first
            if not ids:
                return []
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(k.payloads, ids)
            pipe.hmget(k.deliveries, ids)
            pipe.hmget(k.errors, ids)
            raws, counts, errors = pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
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
        return int(self._call(self._dead_requeue_script, self._kind_arg, limit))

    def purge_dead(self, limit: int) -> int:
        return int(self._call(self._dead_purge_script, limit))
