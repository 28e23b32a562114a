"""The Redis backend: lists for FIFO and LIFO queues, a sorted set for priority queues.

Every change that takes more than one command is one Lua script (``lua/*.lua``) that declares
every key it touches in ``KEYS``. All keys of one queue share the hash tag ``{name}``::

    dq:{name}:items       list (FIFO/LIFO; items enter at the left) or zset (priority)
    dq:{name}:meta        hash: "shutdown" once the queue is shut down
    dq:{name}:unfinished  string: items put and not yet marked done
    dq:{name}:notfull     list: at most one token, "there may be room" (blocked producers)
    dq:{name}:joined      list: at most one token, "no task is unfinished" (join)
    dq:{name}:shutdown    list: the shutdown token (producers, join, FIFO/LIFO consumers)
    dq:{name}:shutdownz   zset: the shutdown token (priority consumers)
    dq:{name}:seq         string: the last sequence number of the priority queue
    dq:{name}:dead        list: raw payloads that could not be decoded

Waiting is a blocking Redis command (BRPOP, BLPOP, BZPOPMIN) on the key that will change,
never polling. A blocking command waits at most ``BLOCK_SLICE`` seconds at a time, so that a
connection that died silently is noticed, and a timeout is never sent as 0 (Redis reads 0 as
"forever"). Tokens are at most one per list and are handed on by whoever takes them, so every
waiter wakes; a stale token costs one extra check, never a wrong answer.

Errors of redis-py are translated here: connection failures (after redis-py's bounded retry)
to ``BackendConnectionError``, WRONGTYPE to ``WrongTypeError`` naming the key.
"""

from __future__ import annotations

import logging
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
from .base import Deadline, Kind

logger = logging.getLogger("distqueue.redis")

BLOCK_SLICE = 5.0
"""The longest a single blocking command waits, in seconds; longer waits are several."""

_MIN_BLOCK = 0.001  # Redis blocks with millisecond resolution; never send 0 ("forever").

_SHUT_DOWN = -1
_NO_ROOM = -2


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text(encoding="utf-8")


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
        self._owns_client = owns_client
        self.kind = kind
        self._client = client
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        prefix = f"dq:{{{name}}}:"
        self.items_key = prefix + "items"
        self.meta_key = prefix + "meta"
        self.unfinished_key = prefix + "unfinished"
        self.notfull_key = prefix + "notfull"
        self.joined_key = prefix + "joined"
        self.shutdown_key = prefix + "shutdown"
        self.shutdownz_key = prefix + "shutdownz"
        self.seq_key = prefix + "seq"
        self.dead_key = prefix + "dead"
        self._key_types = {
            self.items_key: "zset" if kind is Kind.PRIORITY else "list",
            self.meta_key: "hash",
            self.unfinished_key: "string",
            self.notfull_key: "list",
            self.joined_key: "list",
            self.shutdown_key: "list",
            self.shutdownz_key: "zset",
            self.seq_key: "string",
            self.dead_key: "list",
        }

        register = client.register_script
        self._priority = kind is Kind.PRIORITY
        if self._priority:
            self._put_script = register(_script("put_priority.lua"))
            self._put_keys = [
                self.items_key,
                self.meta_key,
                self.unfinished_key,
                self.notfull_key,
                self.joined_key,
                self.seq_key,
            ]
        else:
            self._put_script = register(_script("put_list.lua"))
            self._put_keys = [
                self.items_key,
                self.meta_key,
                self.unfinished_key,
                self.notfull_key,
                self.joined_key,
            ]
        self._pop_script = register(_script("pop.lua"))
        self._pop_keys = [self.items_key, self.meta_key, self.notfull_key]
        self._signal_script = register(_script("signal.lua"))
        self._signal_keys = [self.meta_key, self.notfull_key, self.shutdown_key, self.shutdownz_key]
        self._task_done_script = register(_script("task_done.lua"))
        self._join_check_script = register(_script("join_check.lua"))
        self._shutdown_script = register(_script("shutdown.lua"))
        self._dead_letter_script = register(_script("dead_letter.lua"))

        self._blocking_pop: Any
        if kind is Kind.FIFO:
            self._blocking_pop = client.brpop
        elif kind is Kind.LIFO:
            self._blocking_pop = client.blpop
        else:
            self._blocking_pop = client.bzpopmin
        self._wait_keys = [
            self.items_key,
            self.shutdownz_key if self._priority else self.shutdown_key,
        ]
        self._kind_arg = kind.value

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
            for key, expected in self._key_types.items():
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

    # -- encoding --------------------------------------------------------------------------

    def _encode(self, items: Sequence[Any]) -> list[Any]:
        dumps = self._dumps
        if self._priority:
            args: list[Any] = []
            for item in items:
                payload = dumps(item)
                args.append(sort_key(item))
                args.append(payload)
            return args
        return [dumps(item) for item in items]

    def _payload(self, raw: bytes) -> bytes:
        if self._priority:
            key_length = int.from_bytes(raw[-4:], "big")
            return raw[key_length + 8 : -4]
        return raw

    def _decode(self, raws: list[bytes]) -> list[Any]:
        """Decode payloads; undecodable ones go to the dead-letter list."""
        loads = self._loads
        items: list[Any] = []
        bad: list[bytes] = []
        errors: list[Exception] = []
        for raw in raws:
            payload = self._payload(raw) if self._priority else raw
            try:
                items.append(loads(payload))
            # Any failure of a serializer to decode means the same thing here: the payload is
            # unusable. It is kept on the dead-letter list, never dropped.
            except Exception as exc:
                bad.append(payload)
                errors.append(exc)
        if bad:
            self._dead_letter(bad)
            logger.error(
                "queue %r: %d payload(s) could not be decoded and were moved to %r: %s",
                self.name,
                len(bad),
                self.dead_key,
                errors[0],
            )
            if not items:
                raise DeserializationError(
                    f"queue {self.name!r}: a payload could not be decoded by the "
                    f"{self._serializer.name} serializer ({errors[0]}); it was moved to the "
                    f"dead-letter list {self.dead_key!r}",
                    queue=self.name,
                    payload=bad[0],
                ) from errors[0]
        return items

    def _dead_letter(self, payloads: list[bytes]) -> None:
        try:
            self._dead_letter_script(
                keys=[self.dead_key, self.unfinished_key, self.joined_key], args=payloads
            )
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    # -- putting ---------------------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        payload = self._dumps(item)
        if self._priority:
            self._put([maxsize, sort_key(item), payload], maxsize, timeout)
        else:
            self._put([maxsize, payload], maxsize, timeout)

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        if not items:
            if self.is_shutdown():
                raise ShutDown
            return
        self._put([maxsize, *self._encode(items)], maxsize, timeout)

    def _put(self, args: list[Any], maxsize: int, timeout: float | None) -> None:
        deadline: Deadline | None = None
        try:
            while True:
                result = self._put_script(keys=self._put_keys, args=args)
                if result >= 0:
                    return
                if result == _SHUT_DOWN:
                    raise ShutDown
                if deadline is None:
                    if timeout is not None and timeout <= 0:
                        raise Full
                    deadline = Deadline(timeout)
                wait = self._wait_time(deadline)
                if wait is None:
                    raise Full
                woke = self._client.blpop([self.notfull_key, self.shutdown_key], wait)
                if woke is not None and woke[0] == self.shutdown_key.encode():
                    self._signal("shutdown")
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    # -- getting ---------------------------------------------------------------------------

    def get(self, timeout: float | None) -> Any:
        try:
            popped = self._pop_script(keys=self._pop_keys, args=[self._kind_arg, 1])
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
        if popped == _SHUT_DOWN:
            raise ShutDown
        if popped:
            return self._decode(popped)[0]
        if timeout is not None and timeout <= 0:
            raise Empty
        return self._decode([self._wait_for_item(Deadline(timeout))])[0]

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        try:
            popped = self._pop_script(keys=self._pop_keys, args=[self._kind_arg, n])
            if popped == _SHUT_DOWN:
                raise ShutDown
            if not popped:
                if timeout is not None and timeout <= 0:
                    raise Empty
                popped = [self._wait_for_item(Deadline(timeout), signal=n == 1)]
                if n > 1:
                    more = self._pop_script(keys=self._pop_keys, args=[self._kind_arg, n - 1])
                    if isinstance(more, list) and more:
                        popped.extend(more)
                    else:
                        self._signal("room")
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
        return self._decode(popped)

    def _wait_for_item(self, deadline: Deadline, signal: bool = True) -> bytes:
        """Block until an item can be taken; take it and return its raw bytes."""
        shutdown_key = self._wait_keys[1].encode()
        try:
            while True:
                wait = self._wait_time(deadline)
                if wait is None:
                    raise Empty
                woke = self._blocking_pop(self._wait_keys, wait)
                if woke is None:
                    continue
                if woke[0] == shutdown_key:
                    self._signal("shutdown")
                    raise ShutDown
                if signal:
                    self._signal("room")
                raw = woke[1]
                assert isinstance(raw, bytes)  # the client does not decode responses
                return raw
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    @staticmethod
    def _wait_time(deadline: Deadline) -> float | None:
        """Seconds for the next blocking command, or ``None`` when the deadline has passed."""
        remaining = deadline.remaining()
        if remaining is None:
            return BLOCK_SLICE
        if remaining < _MIN_BLOCK:
            return None
        return min(remaining, BLOCK_SLICE)

    def _signal(self, what: str) -> int:
        return int(self._signal_script(keys=self._signal_keys, args=[what]))

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> int:
        try:
            if self._priority:
                return int(self._client.zcard(self.items_key))
            return int(self._client.llen(self.items_key))
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def task_done(self) -> None:
        try:
            result = self._task_done_script(keys=[self.unfinished_key, self.joined_key])
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
        if result < 0:
            raise ValueError("task_done() called too many times")

    def join(self, timeout: float | None) -> bool:
        deadline = Deadline(timeout)
        keys = [self.unfinished_key, self.joined_key]
        try:
            while True:
                if self._join_check_script(keys=keys) == 1:
                    return True
                wait = self._wait_time(deadline)
                if wait is None:
                    return False
                self._client.blpop([self.joined_key], wait)
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def unfinished_tasks(self) -> int:
        try:
            value = self._client.get(self.unfinished_key)
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc
        return int(value or 0)

    def shutdown(self, immediate: bool) -> None:
        keys = [
            self.items_key,
            self.meta_key,
            self.unfinished_key,
            self.joined_key,
            self.shutdown_key,
            self.shutdownz_key,
        ]
        try:
            self._shutdown_script(keys=keys, args=["1" if immediate else "0"])
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def is_shutdown(self) -> bool:
        try:
            return bool(self._client.hexists(self.meta_key, "shutdown"))
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc) from exc

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
