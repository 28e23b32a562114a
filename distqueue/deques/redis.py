"""Deques on Redis: one list per deque, changed only by single commands and Lua scripts.

The keys of the deque called ``name`` share the hash tag ``{name}``, so a Redis Cluster keeps
them on one node (:func:`~distqueue.backends.redis.keys.key_prefix`)::

    dq:{name}:deque         list: the payloads, left to right
    dq:{name}:deque:meta    hash: "maxlen" (-1 when unbounded), recorded by the first handle
    dq:{name}:deque:avail   list: token "there may be an item", for blocked pops
    dq:{name}:deque:r:ID    string: the reply of the call with request id ID, for a retry (kept
                            until the client's next call, at most 60 s)

**Memory.** A server at its ``maxmemory`` refuses the scripts that may add to it (append,
extend, insert, assignment, ``*=``), and still runs those that take away or rearrange
(``flags=allow-oom``), so a full server can be drained.

**Atomicity.** Every change is one Lua script (``backends/lua/deque_*.lua``); every read is one
command (``LLEN``, ``LINDEX``, ``LRANGE``, ``LPOS``) or a script that writes nothing. The maxlen
lives on the server: every script that adds items checks that the handle's maxlen is the one
recorded, so two handles never disagree about what to drop.

**Retries.** Each change carries a request id and is retried by
:class:`~distqueue.backends.connection.Retrier`: a retry after a lost reply returns the first
reply and changes nothing, so an append is never doubled and a popped item never lost in
flight.

**Waiting.** A blocked pop waits on the ``avail`` token list with ``BLPOP``, never polling: at
most ``BLOCK_SLICE`` seconds per command, never 0 (Redis reads 0 as "forever"). Whatever adds
items leaves one token there; a pop that leaves items behind leaves it for the next waiter.
A token left stale costs one extra look, never a wrong answer.

**Equality.** ``count``, ``index``, ``remove`` and ``in`` compare payloads, the bytes the
serializer makes, on the server: two items are equal when they serialize alike.

Errors of redis-py are translated here: connection failures to ``BackendConnectionError`` (or
``OutcomeUnknownError``), WRONGTYPE to ``WrongTypeError`` naming the key.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions

from ..backends import connection as _connection
from ..backends.base import Deadline
from ..backends.connection import RedisOptions, Retrier
from ..backends.redis.backend import translate_server_error, wrong_type
from ..backends.redis.keys import key_prefix
from ..backends.scripts import RequestIds, Script, ServerTraits
from ..errors import (
    DeserializationError,
    SerializationError,
    WrongTypeError,
)
from ..serializers import Serializer

__all__ = ["Connections", "DequeKeys", "RedisDequeStore"]

T = TypeVar("T")

PAGE = 500
"""Items read per ``LRANGE`` while iterating."""

_INDEX_LIMIT = 2**62
"""Indexes beyond this are clipped to it: no list is that long, and Redis takes 64-bit ones."""

_TIMES_LIMIT = 2**32
"""Repetitions beyond this are clipped to it: the result would not fit a Redis list anyway."""

_BLOCK_ERROR_PAUSE = 0.05


def _clip(index: int) -> int:
    return max(-_INDEX_LIMIT, min(index, _INDEX_LIMIT))


class DequeKeys:
    """The names of one deque's keys (``types``: each key and the Redis type it holds)."""

    def __init__(self, name: str) -> None:
        self.list = key_prefix(name) + "deque"
        self.meta = self.list + ":meta"
        self.avail = self.list + ":avail"
        self.reply = self.list + ":r:"  # + a request id
        self.types = {self.list: "list", self.meta: "hash", self.avail: "list"}


class Connections:
    """The two clients of a Redis URL (commands, blocking waits) and its time limits, shared by
    a deque and the deques made from it (``copy``, ``+``, ``*``); closed with the last of them.
    """

    def __init__(self, commands: Any, waits: Any, options: RedisOptions) -> None:
        self.commands = commands
        self.waits = waits
        self.options = options
        self._users = 1
        self._lock = threading.Lock()

    def share(self) -> Connections:
        """These connections, for one more user."""
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        """One user is done; the last one closes the clients."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.commands.close()
            if self.waits is not self.commands:
                self.waits.close()


class RedisDequeStore:
    """One deque on a Redis server; see :class:`distqueue.deques.base.DequeStore`.

    ``connections.waits`` runs the blocking commands: its socket timeout must exceed
    ``BLOCK_SLICE``. Nothing is sent before the first call.
    """

    shared = True

    def __init__(
        self,
        connections: Connections,
        name: str,
        maxlen: int | None,
        serializer: Serializer,
    ) -> None:
        self.name: str | None = name
        self.maxlen = maxlen
        self._maxlen_arg = -1 if maxlen is None else maxlen
        self._connections = connections
        self._closed = False
        client = self._client = connections.commands
        self._waits = connections.waits
        self._serializer = serializer
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        self._serializer_name = getattr(serializer, "name", type(serializer).__name__)
        self._retrier = Retrier(connections.options, f"deque {name!r}")
        self._request_id = RequestIds()
        # reply keys of calls whose replies arrived, for later calls to delete (one each)
        self._received: collections.deque[str] = collections.deque(maxlen=64)
        k = self.keys = DequeKeys(name)

        traits = ServerTraits()

        def changes(script: str, *keys: str) -> Script:
            return Script(
                client,
                script,
                keys,
                retry_safe=True,
                replica_wait=connections.options.replica_wait,
                traits=traits,
            )

        self._push = changes("deque_push.lua", k.list, k.meta, k.avail)
        self._pop = changes("deque_pop.lua", k.list, k.avail)
        self._clear = changes("deque_clear.lua", k.list, k.avail)
        self._rotate = changes("deque_rotate.lua", k.list)
        self._set = changes("deque_set.lua", k.list)
        self._delete_at = changes("deque_delete.lua", k.list, k.avail)
        self._insert = changes("deque_insert.lua", k.list, k.meta, k.avail)
        self._remove = changes("deque_remove.lua", k.list, k.avail)
        self._reverse = changes("deque_reverse.lua", k.list)
        self._repeat = changes("deque_repeat.lua", k.list, k.meta, k.avail)
        self._index = Script(client, "deque_index.lua", [k.list], traits=traits)

    # -- running commands ------------------------------------------------------------------

    def _run(self, script: Script, *args: Any, what: str, wait_until: float | None = 0.0) -> Any:
        """Run a retry-safe script under one request id, retried until it answers. The call
        also names the reply key of an earlier call whose reply arrived, for the server to
        delete (see :mod:`distqueue.backends.scripts`)."""
        try:
            done = self._received.popleft()
        except IndexError:
            done = self.keys.reply  # a key never written: no reply received yet
        request = self.keys.reply + self._request_id()
        reply = self._attempt(
            lambda: script(done, request, *args), what=what, changes=True, wait_until=wait_until
        )
        self._received.append(request)
        return reply

    def _read(self, attempt: Callable[[], T], *, what: str) -> T:
        """Run a call that changes nothing."""
        return self._attempt(attempt, what=what, changes=False, wait_until=0.0)

    def _attempt(
        self, attempt: Callable[[], T], *, what: str, changes: bool, wait_until: float | None
    ) -> T:
        try:
            return self._retrier.run(attempt, what=what, changes=changes, wait_until=wait_until)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise self._translate(exc) from exc

    def _translate(
        self, exc: redis.exceptions.RedisError | redis.exceptions.RedisClusterException
    ) -> Exception:
        """The exception for an error of redis-py (raise it ``from exc``)."""
        text = str(exc)
        if isinstance(exc, redis.exceptions.ResponseError):
            if "DEQUEMAXLEN" in text:
                stored = int(text.split("DEQUEMAXLEN", 1)[1].split()[0])
                return ValueError(
                    f"deque {self.name!r} exists on this server with "
                    f"maxlen={None if stored < 0 else stored!r}, not maxlen={self.maxlen!r}: "
                    "open it with the maxlen it was made with"
                )
            if "DEQUETOOLONG" in text:
                return MemoryError(f"deque {self.name!r} would grow beyond a Redis list's limit")
            if "WRONGTYPE" in text:
                return self._wrong_type_error(exc)
        return translate_server_error(exc, f"deque {self.name!r}")

    def _wrong_type_error(self, exc: Exception) -> WrongTypeError:
        subject = f"deque {self.name!r}"
        try:
            for key in self.keys.types:
                found = wrong_type(self.keys.types, subject, key, self._client.type(key))
                if found is not None:
                    return found
        except redis.exceptions.RedisError:
            pass  # the original error below is still the one worth reporting
        return WrongTypeError(f"a key of {subject} has the wrong type: {exc}")

    def _block(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the token of an item.

        A failed wait counts as a quiet one, after a short pause: the next pop retries the
        connection, within its own limits.
        """
        try:
            self._waits.blpop([self.keys.avail], seconds)
        except _connection.RETRYABLE:
            time.sleep(min(_BLOCK_ERROR_PAUSE, seconds))
        except redis.exceptions.ResponseError as exc:
            # UNBLOCKED: the server stopped being the master while we waited; the next pop
            # finds the new one.
            if not str(exc).startswith("UNBLOCKED"):
                raise self._translate(exc) from exc
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise self._translate(exc) from exc

    # -- encoding --------------------------------------------------------------------------

    def _decode(self, raw: bytes) -> Any:
        try:
            return self._loads(raw)
        except DeserializationError as exc:
            raise DeserializationError(
                f"deque {self.name!r}: an item could not be decoded by the "
                f"{self._serializer_name} serializer ({exc})",
                queue=self.name,
                payload=raw,
            ) from exc
        # A serializer of the caller's may raise anything: the payload is unusable all the same.
        except Exception as exc:
            raise DeserializationError(
                f"deque {self.name!r}: an item could not be decoded by the "
                f"{self._serializer_name} serializer ({exc!r})",
                queue=self.name,
                payload=raw,
            ) from exc

    # -- the store -------------------------------------------------------------------------

    def length(self) -> int:
        return int(self._read(lambda: self._client.llen(self.keys.list), what="len()"))

    def push(self, items: Sequence[Any], left: bool) -> None:
        payloads = [self._dumps(item) for item in items]
        if self.maxlen is not None and len(payloads) > self.maxlen:
            # only the last maxlen of them could stay
            payloads = payloads[len(payloads) - self.maxlen :]
        side = "left" if left else "right"
        self._run(self._push, self._maxlen_arg, side, *payloads, what="an append")

    def pop(self, left: bool, timeout: float | None) -> Any:
        deadline = Deadline(timeout)
        waits = timeout is None or timeout > 0
        side = "left" if left else "right"
        while True:
            raw = self._run(self._pop, side, what="a pop", wait_until=deadline.at if waits else 0.0)
            if raw is not None:
                return self._decode(raw)
            if not waits:
                raise IndexError("pop from an empty deque")
            remaining = deadline.remaining()
            if remaining is not None and remaining < _connection.MIN_BLOCK:
                raise IndexError("pop from an empty deque")
            wait = _connection.BLOCK_SLICE
            if remaining is not None and remaining < wait:
                wait = remaining
            self._block(wait)

    def rotate(self, steps: int) -> None:
        self._run(self._rotate, str(steps), what="rotate()")

    def clear(self) -> None:
        self._run(self._clear, what="clear()")

    def _wanted(self, item: Any) -> bytes | None:
        """The payload to look for, or ``None`` for an item the serializer refuses, which
        therefore cannot be in the deque."""
        try:
            return self._dumps(item)
        except SerializationError:
            return None

    def count(self, item: Any) -> int:
        payload = self._wanted(item)
        if payload is None:
            return 0
        found = self._read(
            lambda: self._client.lpos(self.keys.list, payload, count=0), what="count()"
        )
        return len(found or [])

    def contains(self, item: Any) -> bool:
        payload = self._wanted(item)
        if payload is None:
            return False
        found = self._read(lambda: self._client.lpos(self.keys.list, payload), what="'in'")
        return found is not None

    def index(self, item: Any, start: int, stop: int) -> int:
        payload = self._wanted(item)
        found = -1
        if payload is not None:
            found = int(
                self._read(lambda: self._index(payload, _clip(start), _clip(stop)), what="index()")
            )
        if found < 0:
            raise ValueError(f"{item!r} is not in deque")
        return found

    def get(self, index: int) -> Any:
        raw = self._read(lambda: self._client.lindex(self.keys.list, _clip(index)), what="d[i]")
        if raw is None:
            raise IndexError("deque index out of range")
        return self._decode(raw)

    def set(self, index: int, item: Any) -> None:
        payload = self._dumps(item)
        if not self._run(self._set, _clip(index), payload, what="d[i] = x"):
            raise IndexError("deque index out of range")

    def delete_at(self, index: int) -> None:
        if not self._run(self._delete_at, _clip(index), what="del d[i]"):
            raise IndexError("deque index out of range")

    def insert(self, index: int, item: Any) -> None:
        payload = self._dumps(item)
        if self._run(self._insert, self._maxlen_arg, _clip(index), payload, what="insert()") < 0:
            raise IndexError("deque already at its maximum size")

    def remove(self, item: Any) -> None:
        payload = self._wanted(item)
        if payload is None or not self._run(self._remove, payload, what="remove()"):
            raise ValueError("deque.remove(x): x not in deque")

    def reverse(self) -> None:
        self._run(self._reverse, what="reverse()")

    def repeat(self, times: int) -> None:
        times = min(times, _TIMES_LIMIT)
        self._run(self._repeat, self._maxlen_arg, max(times, 0), what="d *= n")

    def items(self) -> list[Any]:
        raws = self._read(lambda: self._client.lrange(self.keys.list, 0, -1), what="a read")
        return [self._decode(raw) for raw in raws]

    def iterate(self, reverse: bool) -> Iterator[Any]:
        done = 0
        while True:
            if reverse:
                page = self._page(-(done + PAGE), -(done + 1))
                page.reverse()
            else:
                page = self._page(done, done + PAGE - 1)
            for raw in page:
                yield self._decode(raw)
            if len(page) < PAGE:
                return
            done += PAGE

    def _page(self, first: int, last: int) -> list[bytes]:
        key = self.keys.list
        return list(self._read(lambda: self._client.lrange(key, first, last), what="iteration"))

    def delete(self) -> None:
        k = self.keys
        self._read(lambda: self._client.delete(k.list, k.meta, k.avail), what="delete()")

    def sibling(self) -> RedisDequeStore:
        return RedisDequeStore(
            self._connections.share(), uuid.uuid4().hex, self.maxlen, self._serializer
        )

    def close(self) -> None:
        if not self._closed:  # a handle closed twice releases its connections once
            self._closed = True
            self._connections.release()
