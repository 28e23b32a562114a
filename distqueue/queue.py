"""Queue, LifoQueue, PriorityQueue and SimpleQueue: the standard library's contract, on any backend.

These classes validate arguments and keep the standard library's rules; storage, atomicity and
waiting belong to the backend (:mod:`distqueue.backends`). With the memory backend they behave
exactly like :mod:`queue`; with Redis, the same name at the same URL is the same queue in every
process on every machine.

Timeouts follow the standard library: seconds (int or float); ``None`` waits as long as it
takes; ``block=False`` or ``timeout=0`` never waits; a negative timeout is ``ValueError``.
"""

from __future__ import annotations

import contextlib
import types
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from .backends.base import DeadLetter, Kind, QueueBackend
from .errors import LeaseLost
from .leases import (
    DEFAULT_VISIBILITY_TIMEOUT,
    LeaseKeeper,
    Message,
    check_lease_settings,
    retry_delay_for,
)
from .serializers import Serializer, get_serializer
from .url import open_backend, resolve_url

T = TypeVar("T")

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]


def _check_timeout(block: bool, timeout: float | None) -> float | None:
    if not block:
        return 0
    if timeout is None:
        return None
    if not timeout >= 0:  # also refuses nan
        raise ValueError("'timeout' must be a non-negative number")
    return timeout


_ALL = 2**31 - 1


def _reopen(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    return cls(**kwargs)


class _QueueBase(Generic[T]):
    _kind: ClassVar[Kind] = Kind.FIFO

    def __init__(
        self,
        *,
        url: str | None,
        name: str | None,
        serializer: Serializer | str | None,
        client: Any,
    ) -> None:
        if name is None:
            name = uuid.uuid4().hex
        elif not isinstance(name, str) or not name:
            raise ValueError(f"queue name must be a non-empty str, not {name!r}")
        self.name = name
        if client is not None and url is not None:
            raise ValueError("give either url or client, not both")
        self.url: str | None = None if client is not None else resolve_url(url)
        self._serializer_spec = serializer
        self.serializer = get_serializer(serializer)
        self._backend: QueueBackend = open_backend(
            self.url, name, self._kind, self.serializer, client
        )

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]

    def qsize(self) -> int:
        """Return the approximate size of the queue (not reliable!).

        Another producer or consumer may change it before the caller acts on the answer.
        Raises ``BackendConnectionError`` when the server cannot be reached.
        """
        return self._backend.qsize()

    def empty(self) -> bool:
        """Return True if the queue is empty, False otherwise (not reliable!)."""
        return self._backend.qsize() == 0

    def put_nowait(self, item: T) -> None:
        """Put an item into the queue without blocking.

        Only enqueue the item if a free slot is immediately available; otherwise raise ``Full``.
        """
        self.put(item, block=False)

    def get_nowait(self) -> T:
        """Remove and return an item from the queue without blocking.

        Only get an item if one is immediately available; otherwise raise ``Empty``.
        """
        return self.get(block=False)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        raise NotImplementedError

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        raise NotImplementedError

    def delete(self) -> None:
        """Delete the queue and everything it holds, for every user of it: waiting items,
        leases, dead letters, counters and the shutdown state. The name is then free.

        Raises ``BackendConnectionError`` if the server cannot be reached.
        """
        self._backend.delete()

    def close(self) -> None:
        """Release the queue's connections. The items stay on the server."""
        self._backend.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} url={self.url!r}>"

    def _reopen_kwargs(self) -> dict[str, Any]:
        return {"url": self.url, "name": self.name, "serializer": self._serializer_spec}

    def __reduce__(self) -> tuple[Any, ...]:
        # A queue object sent to another process (multiprocessing, say) opens the same queue
        # there. In-process storage cannot travel.
        if not self._backend.shared or self.url is None:
            raise TypeError(
                f"a {type(self).__name__} on the memory backend or on a client object cannot "
                "be sent to another process; give it a redis:// URL"
            )
        return (_reopen, (type(self), self._reopen_kwargs()))


class Queue(_QueueBase[T]):
    """A first-in, first-out queue with the standard library's ``queue.Queue`` contract.

    ``maxsize`` bounds the number of waiting items (``<= 0``: unbounded); ``url`` chooses the
    backend (``None``: ``$DISTQUEUE_URL``, else in-process memory); ``name`` identifies the
    queue on a shared backend (``None``: a fresh unique name); ``serializer`` is ``None`` for
    the safe default, ``"pickle"`` only when asked for, or an object with ``dumps``/``loads``.

    ``client`` is an alternative to ``url``: a ready ``redis.Redis`` (or compatible, e.g. a
    Sentinel's ``master_for()``) that the caller keeps owning.

    Raises ``ValueError`` for a malformed or unknown URL, a bad name or serializer.
    """

    _kind = Kind.FIFO

    def __init__(
        self,
        maxsize: int = 0,
        *,
        url: str | None = None,
        name: str | None = None,
        serializer: Serializer | str | None = None,
        client: Any = None,
        visibility_timeout: float | None = None,
        max_deliveries: int = 5,
    ) -> None:
        if not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        check_lease_settings(visibility_timeout, max_deliveries)
        self.maxsize = maxsize
        self.visibility_timeout = visibility_timeout
        self.max_deliveries = max_deliveries
        super().__init__(url=url, name=name, serializer=serializer, client=client)
        self._leases = LeaseKeeper(self._backend, visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT)

    def _reopen_kwargs(self) -> dict[str, Any]:
        return {
            "maxsize": self.maxsize,
            "visibility_timeout": self.visibility_timeout,
            "max_deliveries": self.max_deliveries,
            **super()._reopen_kwargs(),
        }

    @property
    def unfinished_tasks(self) -> int:
        """The number of items put and not yet marked done with :meth:`task_done`."""
        return self._backend.unfinished_tasks()

    @property
    def is_shutdown(self) -> bool:
        """Whether the queue has been shut down, by this object or any other user of it."""
        return self._backend.is_shutdown()

    def task_done(self) -> None:
        """Indicate that a formerly enqueued task is complete.

        Used by queue consumer threads. For each get() used to fetch a task, a subsequent call
        to task_done() tells the queue that the processing on the task is complete. The count is
        shared by every user of the queue, in every process.

        If a join() is currently blocking, it will resume when all items have been processed.

        With ``visibility_timeout`` set, this acknowledges the calling thread's oldest item
        leased by get() (or, if it holds none, this queue object's oldest), which then leaves
        the queue for good.

        Raises ``ValueError`` if called more times than there were items placed in the queue;
        with ``visibility_timeout``, ``LeaseLost`` if the item's lease ran out (this process
        was paused or cut off for longer than the timeout) and it was delivered again.
        """
        if self.visibility_timeout is not None:
            lease_id = self._leases.oldest_for_task_done()
            if lease_id is not None:
                if self._backend.ack([lease_id]) == 0:
                    raise LeaseLost(
                        f"queue {self.name!r}: the lease on this item ran out before "
                        "task_done() and the item was delivered again; this call counted "
                        "nothing"
                    )
                return
        self._backend.task_done()

    def join(self, timeout: float | None = None) -> bool:
        """Block until all items in the queue have been gotten and processed.

        The count of unfinished tasks goes up whenever an item is added to the queue, in any
        process, and down whenever a consumer calls task_done(). When it drops to zero,
        join() unblocks and returns ``True``. With a ``timeout`` (an addition to the standard
        library's signature), returns ``False`` if it ran out first.
        """
        return self._backend.join(_check_timeout(True, timeout))

    def full(self) -> bool:
        """Return True if the queue is full, False otherwise (not reliable!)."""
        return 0 < self.maxsize <= self._backend.qsize()

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put an item into the queue.

        If optional args 'block' is true and 'timeout' is None (the default), block if
        necessary until a free slot is available. If 'timeout' is a non-negative number, it
        blocks at most 'timeout' seconds and raises the ``Full`` exception if no free slot was
        available within that time. Otherwise ('block' is false), put an item on the queue if
        a free slot is immediately available, else raise the ``Full`` exception ('timeout' is
        ignored in that case).

        Raises ``ShutDown`` if the queue has been shut down, ``SerializationError`` (a
        ``TypeError``) if a shared backend cannot encode the item (nothing is written), and
        ``BackendConnectionError`` if the server cannot be reached.
        """
        if block and timeout is not None and not timeout >= 0:
            raise ValueError("'timeout' must be a non-negative number")
        self._backend.put(item, self.maxsize, timeout if block else 0)

    def put_many(
        self, items: Iterable[T], block: bool = True, timeout: float | None = None
    ) -> None:
        """Put all ``items`` in one atomic step (one round trip on a server).

        Waits, as :meth:`put` does, until there is room for all of them; no other item is put
        between them. Raises ``ValueError`` if they could never fit (more than ``maxsize``),
        else as :meth:`put`; on any error none of them was put.
        """
        batch = list(items)
        if self.maxsize > 0 and len(batch) > self.maxsize:
            raise ValueError(
                f"put_many() of {len(batch)} items can never fit a queue of maxsize {self.maxsize}"
            )
        self._backend.put_many(batch, self.maxsize, _check_timeout(block, timeout))

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return an item from the queue.

        If optional args 'block' is true and 'timeout' is None (the default), block if
        necessary until an item is available. If 'timeout' is a non-negative number, it blocks
        at most 'timeout' seconds and raises the ``Empty`` exception if no item was available
        within that time. Otherwise ('block' is false), return an item if one is immediately
        available, else raise the ``Empty`` exception ('timeout' is ignored in that case).

        Raises ``ShutDown`` if the queue has been shut down and is empty, or if it is shut down
        immediately; ``DeserializationError`` if the next stored payload cannot be decoded (it
        is moved to the queue's dead-letter list, and the next call goes on with the next item);
        ``BackendConnectionError`` if the server cannot be reached.
        """
        if block and timeout is not None and not timeout >= 0:
            raise ValueError("'timeout' must be a non-negative number")
        if self.visibility_timeout is None:
            return self._backend.get(timeout if block else 0)  # type: ignore[no-any-return]
        return self._take_leases(1, timeout if block else 0)[0]

    def _take_leases(self, n: int, timeout: float | None) -> list[T]:
        assert self.visibility_timeout is not None
        leases = self._backend.lease(n, timeout, self.visibility_timeout, self.max_deliveries)
        for lease in leases:
            self._leases.hold(lease, for_task_done=True)
        return [lease.item for lease in leases]

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> list[T]:
        """Remove and return up to ``n`` items in one round trip, in the order get() would.

        Waits, as :meth:`get` does, until at least one item is available, then returns the
        items available at that moment, at most ``n``. Raises as :meth:`get`; a payload that
        cannot be decoded is moved to the dead-letter list and left out, and
        ``DeserializationError`` is raised only when no item of the batch could be decoded.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"get_many() needs n >= 1, not {n!r}")
        if self.visibility_timeout is None:
            return self._backend.get_many(n, _check_timeout(block, timeout))
        return self._take_leases(n, _check_timeout(block, timeout))

    # -- explicit leases -------------------------------------------------------------------

    def get_message(self, block: bool = True, timeout: float | None = None) -> Message[T]:
        """Lease the next item and return it as a :class:`Message` to ``ack()`` or ``nack()``.

        Waits as :meth:`get` does and raises as it does. The lease lasts ``visibility_timeout``
        seconds (30 if the queue has none) and is renewed in the background while this process
        lives and holds it; if the process dies, the item is delivered again once the lease
        has run out. ``task_done()`` does not acknowledge messages: call ``ack()``.
        """
        return self.get_messages(1, block, timeout)[0]

    def get_messages(
        self, n: int, block: bool = True, timeout: float | None = None
    ) -> list[Message[T]]:
        """Lease up to ``n`` items in one round trip, as :meth:`get_many` takes them, each as a
        :class:`Message` (see :meth:`get_message`)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"get_messages() needs n >= 1, not {n!r}")
        lease_seconds = self.visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT
        leases = self._backend.lease(
            n, _check_timeout(block, timeout), lease_seconds, self.max_deliveries
        )
        for lease in leases:
            self._leases.hold(lease, for_task_done=False)
        return [Message(self._leases, lease) for lease in leases]

    def ack_many(self, messages: Iterable[Message[T]]) -> int:
        """Acknowledge several messages in one round trip; returns how many were still held
        (see :meth:`Message.ack`)."""
        ids = [message.id for message in messages]
        for lease_id in ids:
            self._leases.release(lease_id)
        return self._backend.ack(ids) if ids else 0

    @contextlib.contextmanager
    def lease(
        self, block: bool = True, timeout: float | None = None, *, retry_delay: float | None = None
    ) -> Iterator[T]:
        """Lease the next item for the body of a ``with`` block.

        ``with q.lease() as item: work(item)`` acknowledges the item when the block succeeds;
        when it raises, the item is given back and delivered again after ``retry_delay``
        seconds (default: 1, 2, 4 ... 60 s by delivery count), and the exception propagates.
        After ``max_deliveries`` deliveries it becomes a dead letter instead.
        """
        message = self.get_message(block, timeout)
        try:
            yield message.item
        except BaseException:
            delay = retry_delay_for(message.deliveries) if retry_delay is None else retry_delay
            message.nack(delay)
            raise
        message.ack()

    def in_flight(self) -> int:
        """The number of items leased by consumers and not yet acknowledged (not reliable!)."""
        return self._backend.in_flight()

    # -- dead letters ----------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters: items delivered ``max_deliveries`` times without
        being acknowledged, and items that could not be decoded; each with its error."""
        return self._backend.dead_letters(limit)

    def requeue_dead(self, limit: int | None = None) -> int:
        """Put dead letters (all, or the oldest ``limit``) back on the queue, with a fresh
        delivery count. Returns how many."""
        return self._backend.requeue_dead(_ALL if limit is None else limit)

    def purge_dead(self, limit: int | None = None) -> int:
        """Delete dead letters (all, or the oldest ``limit``) for good. Returns how many."""
        return self._backend.purge_dead(_ALL if limit is None else limit)

    def close(self) -> None:
        """Stop renewing leases and release connections. Items stay on the server; items still
        leased by this object are delivered again once their lease runs out."""
        self._leases.close()
        super().close()

    def shutdown(self, immediate: bool = False) -> None:
        """Shut-down the queue, making queue gets and puts raise ``ShutDown``.

        By default, gets will only raise once the queue is empty. Set 'immediate' to True to
        make gets raise immediately instead; the waiting items are then dropped and each
        counts as done for join().

        All blocked callers of put() and get() will be unblocked, in every process. If
        'immediate', callers of join() are unblocked too.
        """
        self._backend.shutdown(bool(immediate))


class LifoQueue(Queue[T]):
    """A last-in, first-out queue: the most recently added item is retrieved first."""

    _kind = Kind.LIFO


class PriorityQueue(Queue[T]):
    """A queue that retrieves the lowest item first, as Python compares items.

    Items are typically ``(priority, data)`` tuples. Items that compare equal come out first in,
    first out, and two identical items stay two entries. Where Python cannot compare two items
    (two dicts behind the same priority), they come out first in, first out instead of raising.
    On a shared backend, items that Python could not compare at all (an int and a str) are
    ordered by type: numbers, bytes, str, dates and times, then tuples and lists.
    """

    _kind = Kind.PRIORITY


class SimpleQueue(_QueueBase[T]):
    """Simple, unbounded first-in, first-out queue, as ``queue.SimpleQueue``."""

    _kind = Kind.FIFO

    def __init__(
        self,
        *,
        url: str | None = None,
        name: str | None = None,
        serializer: Serializer | str | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(url=url, name=name, serializer=serializer, client=client)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put the item on the queue.

        The optional 'block' and 'timeout' arguments are ignored, as this method never blocks.
        They are provided for compatibility with the Queue class.
        """
        self._backend.put(item, 0, None)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return an item from the queue; see :meth:`Queue.get`."""
        if block and timeout is not None and not timeout >= 0:
            raise ValueError("'timeout' must be a non-negative number")
        return self._backend.get(timeout if block else 0)  # type: ignore[no-any-return]
