"""``ResultStore``: where tasks' results wait for the callers that submitted them.

The lifecycle of one task id::

    mark_pending(id)           before the task can run: "a result will come"
    set_result(id, value)      or set_exception(id, type name, message, traceback text)
    wait(id, timeout)          -> Outcome, as soon as the result is there
    forget(id)                 optional: delete it before its TTL passes

One key, ``{ns}:r:{{id}}`` (see :mod:`distqueue.kv.keys`), holds the pending marker and then
the outcome, so ``wait`` can tell every case apart: an outcome is returned; the pending
marker means "wait on" (until the timeout: ``ResultTimeout``); nothing at all means the
result expired, was evicted, was forgotten or was never expected: ``ResultMissing``, at
once, never a hang and never ``None``. A large outcome is chunked as in the cache; a chunk
that is missing or does not match also gives ``ResultMissing``. What an outcome holds, and the
form it is stored in, is defined by :class:`~distqueue.tasks.Outcome`.

Waiting never polls hot: on Redis it blocks in ``BRPOPLPUSH`` on ``{ns}:n:{{id}}``, to which the
result's write pushes a token in the same ``MULTI``; in memory it waits on a
``threading.Condition``; memcached cannot notify, so the waiter polls with a back-off from 1 ms
doubling to at most 50 ms.

**Unlike the cache, a failed server is an error here**: every method raises
``BackendConnectionError`` when the server of the task's key cannot be reached (after a
failure it is not tried for ``dead_retry`` seconds), and ``BackendError`` when it refuses a
command. A result is never silently lost, and a result written on one server is never looked
for on another: on memcached the task's server is fixed by its key.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import EllipsisType
from typing import Any

from .errors import DeserializationError, DistQueueError, ResultMissing, ResultTimeout
from .kv.base import DEFAULT, DEFAULT_DEAD_RETRY, Default, check_ttl
from .kv.frames import PENDING, Corrupt
from .kv.keys import DEFAULT_NAMESPACE
from .kv.values import open_values
from .serializers import Serializer, get_serializer
from .tasks import Outcome

__all__ = ["ResultStore"]


def _is_pending(item: bytes | None) -> bool:
    return item == PENDING


class ResultStore:
    """Results of tasks by id, on memcached, Redis or memory; see the module docstring.

    ``url`` as for :class:`~distqueue.cache.Cache`; ``ttl``: seconds a result (and a pending
    marker) lives, ``None`` for no expiry; the other options as for ``Cache``. Safe to share
    between threads.

    A server that accepts connections and never answers makes a call raise
    ``BackendConnectionError`` after at most ``connect_timeout + timeout`` seconds (4 s by
    default); :meth:`wait` after its own timeout plus that (and at most 5 s more on Redis,
    the longest single blocking command). See :mod:`distqueue.kv.url`.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float | None = 24 * 3600.0,
        namespace: str = DEFAULT_NAMESPACE,
        serializer: Serializer | str | None = None,
        chunking: bool = True,
        compress_min_size: int | None = 64 * 1024,
        connect_timeout: float | Default = DEFAULT,
        timeout: float | Default = DEFAULT,
        dead_retry: float = DEFAULT_DEAD_RETRY,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.ttl = check_ttl(ttl)
        self.serializer = get_serializer(serializer)
        self._store = open_values(
            url,
            namespace=namespace,
            serializer=self.serializer,
            chunking=chunking,
            compress_min_size=compress_min_size,
            connect_timeout=connect_timeout,
            timeout=timeout,
            dead_retry=dead_retry,
            blocking=True,
        )
        self._backend = self._store.backend
        self._keys = self._store.keys

    def _key(self, task_id: str) -> bytes:
        return self._task_keys(task_id)[0]

    def _wake_key(self, task_id: str) -> bytes:
        return self._task_keys(task_id)[1]

    def _task_keys(self, task_id: str) -> tuple[bytes, bytes]:
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        return self._keys.task_keys(task_id)

    def mark_pending(self, task_id: str) -> None:
        """Record that a result will come for ``task_id``; call it before the task can run.

        Does nothing if the task already has a pending marker or a result.
        """
        self._backend.add(self._key(task_id), PENDING, self.ttl)

    def set_result(self, task_id: str, value: Any) -> None:
        """Store the task's return value and wake its waiters.

        Raises ``SerializationError`` or ``ValueTooLargeError`` before anything is written.
        """
        key = self._key(task_id)
        body = self._store.encode(Outcome(task_id, value).encode())
        self._store.publish(key, body, self.ttl, self._wake_key(task_id))

    def set_exception(
        self, task_id: str, exc_type_name: str, message: str, traceback_text: str
    ) -> None:
        """Store that the task raised ``exc_type_name`` (as text) and wake its waiters."""
        for what, text in (("exc_type_name", exc_type_name), ("message", message)):
            if not isinstance(text, str):
                raise TypeError(f"{what} must be a str, not {type(text).__name__}")
        if not isinstance(traceback_text, str):
            raise TypeError(f"traceback_text must be a str, not {type(traceback_text).__name__}")
        key = self._key(task_id)
        outcome = Outcome(task_id, None, exc_type_name, message, traceback_text)
        body = self._store.encode(outcome.encode())
        self._store.publish(key, body, self.ttl, self._wake_key(task_id))

    def set_many(
        self, outcomes: Sequence[Outcome], *, ttl: float | EllipsisType | None = ...
    ) -> None:
        """Store several outcomes (values or exceptions) and wake their waiters, in one round
        trip per server, kept ``ttl`` seconds (default: the store's). An outcome whose value the
        serializer cannot carry, or that is too large with chunking off, is stored as that error
        instead (``SerializationError``, ``ValueTooLargeError``). Raises
        ``BackendConnectionError`` if a server is away."""
        ttl = self.ttl if ttl is ... else check_ttl(ttl)
        bodies: dict[bytes, bytes] = {}
        wake_keys: dict[bytes, bytes] = {}
        for outcome in outcomes:
            key = self._key(outcome.task_id)
            try:
                body = self._store.encode(outcome.encode())
                self._store.check_fits(body)
            except (TypeError, ValueError) as exc:
                text = f"the result could not be stored: {exc}"
                stand_in = Outcome(outcome.task_id, None, type(exc).__name__, text)
                body = self._store.encode(stand_in.encode())
            bodies[key] = body
            wake_keys[key] = self._wake_key(outcome.task_id)
        self._store.publish_many(bodies, ttl, wake_keys)

    def wait(self, task_id: str, timeout: float | None = None) -> Outcome:
        """The outcome of ``task_id``, waiting for it at most ``timeout`` seconds.

        ``None`` waits as long as the task is pending, ``0`` only looks. Raises
        :class:`ResultMissing` at once when there is neither a result nor a pending marker,
        :class:`ResultTimeout` when the task is still pending at the deadline,
        ``DeserializationError`` for a stored outcome that cannot be decoded, and
        ``ValueError`` for a negative timeout.
        """
        key = self._key(task_id)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
            if not timeout >= 0:
                raise ValueError("'timeout' must be a non-negative number")
        item = self._backend.wait_item(
            key,
            self._wake_key(task_id),
            None if timeout is None else float(timeout),
            _is_pending,
        )
        if item is None:
            raise ResultMissing(
                f"no result and no pending task under {task_id!r}: it expired, was evicted or "
                "forgotten, or was never marked pending",
                task_id=task_id,
            )
        if item == PENDING:
            raise ResultTimeout(
                f"task {task_id!r} is still pending after {timeout} s",
                task_id=task_id,
                timeout=float(timeout or 0.0),
            )
        try:
            stored = self._store.decode(item)
        except Corrupt as exc:
            if isinstance(exc.__cause__, DeserializationError):
                raise exc.__cause__ from None
            raise ResultMissing(
                f"the result of {task_id!r} is incomplete ({exc}): part of it was evicted",
                task_id=task_id,
            ) from None
        return Outcome.decode(task_id, stored)

    def fetch_many(self, task_ids: Sequence[str]) -> dict[str, Outcome | DistQueueError]:
        """The outcomes of tasks known to be finished, in one round trip per server.

        Each id maps to its :class:`Outcome`, or to the error reading it would raise:
        :class:`ResultMissing` (expired, evicted, forgotten, or still pending: call this only
        for tasks whose result was announced), ``DeserializationError``, or
        ``BackendConnectionError`` for the ids of a failed server.
        """
        keys = {self._key(task_id): task_id for task_id in task_ids}
        found, failures = self._backend.get_many(list(keys))
        outcomes: dict[str, Outcome | DistQueueError] = {}
        for failure in failures:
            for key in failure.keys:
                outcomes[keys[key]] = failure.error
        for key, task_id in keys.items():
            if task_id in outcomes:
                continue
            item = found.get(key)
            if item is None or item == PENDING:
                outcomes[task_id] = ResultMissing(
                    f"no result under {task_id!r}: it expired, was evicted or forgotten",
                    task_id=task_id,
                )
                continue
            try:
                outcomes[task_id] = Outcome.decode(task_id, self._store.decode(item))
            except Corrupt as exc:
                if isinstance(exc.__cause__, DeserializationError):
                    outcomes[task_id] = exc.__cause__
                else:
                    outcomes[task_id] = ResultMissing(
                        f"the result of {task_id!r} is incomplete ({exc}): part of it was evicted",
                        task_id=task_id,
                    )
            except DeserializationError as exc:
                outcomes[task_id] = exc
        return outcomes

    def forget_many(self, task_ids: Sequence[str]) -> None:
        """Delete the results (or pending markers) of ``task_ids``, and the chunks of large
        ones, in two round trips per server (a look first, for chunks). Raises the first
        server failure."""
        keys = [self._key(task_id) for task_id in task_ids]
        wake_keys = [self._wake_key(task_id) for task_id in task_ids]
        failures = self._store.delete_many(keys, wake_keys)
        if failures:
            raise failures[0].error

    def forget(self, task_id: str) -> None:
        """Delete the result (or pending marker) of ``task_id``, and the chunks of a large
        one. Raises the server's failure."""
        self.forget_many([task_id])

    def close(self) -> None:
        """Release the connections. Results stay on the servers until their TTL passes."""
        self._backend.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ResultStore url={self.url!r} namespace={self._keys.namespace!r}>"
