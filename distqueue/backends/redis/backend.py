"""The Redis backend (lists for FIFO and LIFO queues, a sorted set for priority queues): the
blocking driver of :class:`~.protocol.QueueProtocol`.

It performs the protocol's steps with redis-py: scripts through :class:`~..scripts.Script`,
reads as commands (several in one pipeline), waits as BLPOP on a client of their own whose
socket timeout leaves room for a whole slice. Every script and read is retried by
:class:`~..connection.Retrier` after a connection failure, never by redis-py, so a lost reply
never runs a change twice.

Errors of redis-py are translated here, in :class:`_Translate`: connection failures to
``BackendConnectionError`` (or ``OutcomeUnknownError``), WRONGTYPE to ``WrongTypeError`` naming
the key, a queue of another kind to ``ValueError``, refused credentials to
``AuthenticationError``, anything else to ``BackendError``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, TypeVar

import redis
import redis.exceptions

from ...errors import AuthenticationError, BackendError, WrongTypeError
from ...serializers import Serializer
from .. import connection as _connection
from ..base import DeadLetter, Kind, Lease, Limits, PutOptions
from ..connection import RedisOptions, Retrier
from .protocol import Block, Operation, QueueProtocol, Read, Run
from .table import bind

T = TypeVar("T")

_BLOCK_ERROR_PAUSE = 0.05

_REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


def _block_slice(client: Any) -> float:
    """The longest one blocking command may wait on ``client`` without its socket timing out."""
    pool = getattr(client, "connection_pool", None)  # a RedisCluster has one per node
    socket_timeout = None if pool is None else pool.connection_kwargs.get("socket_timeout")
    if not isinstance(socket_timeout, (int, float)):
        return _connection.BLOCK_SLICE
    return max(0.05, min(_connection.BLOCK_SLICE, socket_timeout - 1.0, socket_timeout / 2))


def translate(exc: BaseException, name: str, kind: Kind) -> Exception:
    """distqueue's exception for an error of redis-py met by queue ``name`` (raise it ``from
    exc``); a WRONGTYPE error becomes a ``WrongTypeError`` that names no key."""
    text = str(exc)
    if isinstance(exc, redis.exceptions.ResponseError) and "WRONGKIND" in text:
        found = re.search(r"is an? (\w+) queue", text)
        return ValueError(
            f"queue {name!r} already exists on this server as a "
            f"{found.group(1) if found else 'different'} queue, not a {kind.value} "
            "queue: open it with the class of its kind"
        )
    if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in text:
        return WrongTypeError(f"a key of queue {name!r} has the wrong type: {exc}")
    return translate_server_error(exc, f"queue {name!r}")


def translate_server_error(exc: BaseException, subject: str) -> Exception:
    """distqueue's exception for an error of redis-py that any of distqueue's objects on
    Redis may meet (``subject``: ``"queue 'jobs'"``): a server out of memory, refused
    credentials, anything else the server refused."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return BackendError(
            f"the Redis server of {subject} is out of memory (OOM: used memory above its "
            "maxmemory) and refuses to store more: take items out, delete what is no longer "
            "needed, or raise maxmemory"
        )
    if isinstance(
        exc,
        (
            redis.exceptions.AuthenticationError,
            redis.exceptions.AuthorizationError,
            redis.exceptions.NoPermissionError,
        ),
    ):
        return AuthenticationError(f"Redis server for {subject} refused the credentials: {exc}")
    return BackendError(f"Redis failed a command for {subject}: {exc}")


def wrong_type(
    types: Mapping[str, str], subject: str, key: str, actual: Any
) -> WrongTypeError | None:
    """The error for ``key`` of ``subject`` (``"queue 'jobs'"``) if ``actual`` (its TYPE reply)
    is not the type distqueue keeps there (``types[key]``), else ``None``."""
    expected = types[key]
    actual_name = actual.decode() if isinstance(actual, bytes) else str(actual)
    if actual_name in ("none", expected):
        return None
    return WrongTypeError(
        f"key {key!r} of {subject} holds a {actual_name}, where distqueue keeps a {expected}",
        key=key,
    )


class _Translate:
    """A context that turns errors of redis-py into distqueue's (see :func:`translate`)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, _REDIS_ERRORS):
            self._backend._raise_translated(exc)


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
        block_slice = _connection.BLOCK_SLICE if waits is not None else _block_slice(client)
        self._protocol = protocol = QueueProtocol(name, kind, serializer, block_slice)
        self.keys = protocol.keys
        options = options or RedisOptions()
        self._scripts = bind(client, self.keys, options.replica_wait)
        self._retrier = Retrier(options, f"queue {name!r}")
        self._translate = _Translate(self)

    # -- performing steps ------------------------------------------------------------------

    def _drive(self, operation: Operation[T]) -> T:
        """Perform ``operation``'s steps in turn; its result."""
        try:
            step = next(operation)
            while True:
                step = operation.send(self._perform(step))
        except StopIteration as done:
            result: T = done.value
            return result

    def _perform(self, step: Run | Read | Block) -> Any:
        if type(step) is Run:
            # the first attempt inline (most calls need no other), the rest by the retrier
            script = self._scripts[step.script]
            args = step.args
            started = time.monotonic()
            try:
                return script(*args)
            except _connection.RETRYABLE as exc:
                failure: BaseException = exc
            except _REDIS_ERRORS as exc:
                self._raise_translated(exc)
            with self._translate:
                return self._retrier.after_failure(
                    lambda: script(*args),
                    failure,
                    started,
                    what=step.what,
                    changes=step.changes,
                    wait_until=step.wait_until,
                )
        if type(step) is Block:
            return self._block(step.keys, step.seconds)
        assert type(step) is Read
        with self._translate:
            return self._retrier.run(
                lambda: self._read(step.commands), what=step.what, changes=False
            )

    def _raise_translated(self, exc: BaseException) -> NoReturn:
        """Raise distqueue's error for ``exc``, an error of redis-py (see :func:`translate`)."""
        error = translate(exc, self.name, self.kind)
        if isinstance(error, WrongTypeError):
            error = self._which_key(error)
        raise error from exc

    def _read(self, commands: tuple[tuple[Any, ...], ...]) -> Any:
        if len(commands) == 1:
            return self._client.execute_command(*commands[0])
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute()

    def _block(self, keys: tuple[str, ...], seconds: float) -> bytes | None:
        try:
            woke = self._waits.blpop(keys, seconds)
        except _connection.RETRYABLE:
            # a failed wait counts as a quiet one, after a short pause (see protocol.py)
            time.sleep(min(_BLOCK_ERROR_PAUSE, seconds))
            return None
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("UNBLOCKED"):
                with self._translate:
                    raise
            # The server stopped being the master while we waited on it; the next wait is
            # refused there (READONLY, a write), which sends the client to the new master.
            return None
        except _REDIS_ERRORS:
            with self._translate:
                raise
        return None if woke is None else bytes(woke[0])

    def _which_key(self, error: WrongTypeError) -> WrongTypeError:
        """``error`` made precise: the key that holds the wrong type, as the server says now."""
        try:
            for key in self.keys.types:
                found = wrong_type(
                    self.keys.types, f"queue {self.name!r}", key, self._client.type(key)
                )
                if found is not None:
                    return found
        except _REDIS_ERRORS:
            pass  # the original error is still the one worth reporting
        return error

    # -- the backend protocol --------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        self._drive(self._protocol.put(item, maxsize, timeout))

    def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        self._drive(self._protocol.put_many(items, maxsize, timeout))

    def put_with(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, options: PutOptions
    ) -> bool:
        return self._drive(self._protocol.put_with(items, maxsize, timeout, options))

    def scheduled(self) -> int:
        return self._drive(self._protocol.scheduled())

    def set_limits(self, limits: Limits) -> None:
        self._drive(self._protocol.set_limits(limits))

    def limits(self) -> Limits:
        return self._drive(self._protocol.limits())

    def pause(self, seconds: float) -> None:
        self._drive(self._protocol.pause(seconds))

    def get(self, timeout: float | None) -> Any:
        return self._drive(self._protocol.get_many(1, timeout))[0]

    def get_many(self, n: int, timeout: float | None) -> list[Any]:
        return self._drive(self._protocol.get_many(n, timeout))

    def qsize(self) -> int:
        return self._drive(self._protocol.qsize())

    def task_done(self) -> None:
        self._drive(self._protocol.task_done())

    def join(self, timeout: float | None) -> bool:
        return self._drive(self._protocol.join(timeout))

    def unfinished_tasks(self) -> int:
        return self._drive(self._protocol.unfinished_tasks())

    def shutdown(self, immediate: bool) -> None:
        self._drive(self._protocol.shutdown(immediate))

    def is_shutdown(self) -> bool:
        return self._drive(self._protocol.is_shutdown())

    def delete(self) -> None:
        self._drive(self._protocol.delete())

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
            if self._waits is not self._client:
                self._waits.close()

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        return self._drive(self._protocol.lease(n, timeout, lease_seconds, max_deliveries))

    def ack(self, ids: Sequence[str]) -> int:
        return self._drive(self._protocol.ack(ids))

    def nack(self, ids: Sequence[str], delay: float) -> int:
        return self._drive(self._protocol.nack(ids, delay))

    def bury(self, ids: Sequence[str], error: str) -> int:
        return self._drive(self._protocol.bury(ids, error))

    def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        return self._drive(self._protocol.extend(ids, lease_seconds))

    def in_flight(self) -> int:
        return self._drive(self._protocol.in_flight())

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        return self._drive(self._protocol.dead_letters(limit))

    def requeue_dead(self, limit: int) -> int:
        return self._drive(self._protocol.requeue_dead(limit))

    def purge_dead(self, limit: int) -> int:
        return self._drive(self._protocol.purge_dead(limit))
