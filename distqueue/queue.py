"""Queue, LifoQueue, PriorityQueue and SimpleQueue: the standard library's contract, on any backend.

These classes validate arguments and keep the standard library's rules; storage, atomicity and
waiting belong to the backend (:mod:`distqueue.backends`). With the memory backend they behave
exactly like :mod:`queue`; with Redis, the same name at the same URL is the same queue in every
process on every machine.

Timeouts follow the standard library: seconds (int or float); ``None`` waits as long as it
takes; ``block=False`` or ``timeout=0`` never waits. A negative timeout is ``ValueError`` where
the standard library checks it: in ``get`` whenever ``block`` is true, in ``put`` whenever
``block`` is true and the queue is bounded, and after the shutdown check in both. NaN counts as
negative (the standard library would spin on it). A timeout of ``threading.TIMEOUT_MAX`` or more,
infinity included, waits as long as ``None`` does.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import threading
import types
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Generic, TypeVar, overload

from .backends.base import DeadLetter, Kind, Limits, QueueBackend
from .backends.memory import SimpleMemoryBackend
from .errors import LeaseLost, ShutDown
from .leases import (
    DEFAULT_VISIBILITY_TIMEOUT,
    LeaseKeeper,
    Message,
    check_lease_settings,
    retry_delay_for,
)
from .options import check_limits, check_seconds, put_options
from .registry import note_memory_queue
from .serializers import Serializer, get_serializer
from .url import open_backend, resolve_url

T = TypeVar("T")

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "SimpleQueue"]

_FOREVER = threading.TIMEOUT_MAX
"""A wait this long (about 292 years on Linux) or longer is a wait without a deadline."""

_ALL = 2**31 - 1
"""The most items one call takes: larger counts are clamped to it."""


def _negative_timeout() -> ValueError:
    # The standard library's message, word for word, for code that matches on it.
    return ValueError("'timeout' must be a non-negative number")


def _wait_for(timeout: float | None) -> float | None:
    """A timeout as the backends take it: ``None`` for no deadline, else seconds ``>= 0``.

    Raises ``ValueError`` for a negative number or NaN.
    """
    if timeout is None or timeout >= _FOREVER:
        return None
    if not timeout >= 0:  # NaN fails this too
        raise _negative_timeout()
    return timeout


def _check_timeout(block: bool, timeout: float | None) -> float | None:
    return _wait_for(timeout) if block else 0


def _check_count(n: Any, method: str) -> int:
    """``n`` for get_many() and get_messages(): an int (not a bool) >= 1, at most ``_ALL``."""
    if type(n) is bool or not isinstance(n, int):
        raise TypeError(f"{method}() needs an int count, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{method}() needs n >= 1, not {n!r}")
    return min(n, _ALL)


def _capacity(maxsize: Any) -> int:
    """The number of items a queue of ``maxsize`` holds when full; 0 when it is unbounded.

    As in the standard library, a queue is bounded when ``maxsize > 0`` and full once it holds
    ``maxsize`` items or more: ``2.5`` holds 3, infinity never fills, NaN and ``-1`` are
    unbounded. Raises ``TypeError`` when ``maxsize`` cannot be compared with 0.
    """
    try:
        bounded = bool(maxsize > 0)
    except TypeError:
        raise TypeError(f"maxsize must be a number, not {type(maxsize).__name__}") from None
    if not bounded:
        return 0
    try:
        capacity: int = math.ceil(maxsize)
        return capacity
    except OverflowError:  # infinity
        return 0


def queue_address(name: str | None, url: str | None, client: Any) -> tuple[str, str | None]:
    """A queue's name (a fresh one when ``None``) and resolved URL (``None`` with a
    ``client``); ``ValueError`` for an empty or non-str name, or both a URL and a client."""
    if name is None:
        name = uuid.uuid4().hex
    elif not isinstance(name, str) or not name:
        raise ValueError(f"queue name must be a non-empty str, not {name!r}")
    if client is not None and url is not None:
        raise ValueError("give either url or client, not both")
    return name, None if client is not None else resolve_url(url)


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
        self.name, self.url = queue_address(name, url, client)
        self._serializer_spec = serializer
        self.serializer = get_serializer(serializer)
        self._backend: QueueBackend = self._open_backend(client)

    def _open_backend(self, client: Any) -> QueueBackend:
        return open_backend(
            self.url, self.name, self._kind, self.serializer, client, self._settings()
        )

    def _settings(self) -> dict[str, Any] | None:
        """What the server's registry records of this queue (see :mod:`distqueue.registry`);
        ``None``: not recorded."""
        return {"simple": True, "serializer": self.serializer.name}

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]

    def qsize(self) -> int:
        """How many items are waiting right now: a snapshot that other producers and consumers
        may already have changed by the time the caller looks at it.

        Raises ``BackendConnectionError`` when the server cannot be reached.
        """
        return self._backend.qsize()

    def empty(self) -> bool:
        """Whether no item is waiting right now; a snapshot, as :meth:`qsize`.

        Raises ``BackendConnectionError`` when the server cannot be reached.
        """
        return self._backend.qsize() == 0

    def put_nowait(self, item: T) -> None:
        """``put(item, block=False)``: add ``item`` only if there is room at once.

        Raises ``Full`` when there is none, otherwise as :meth:`put`.
        """
        self.put(item, block=False)

    def get_nowait(self) -> T:
        """``get(block=False)``: take an item only if one is waiting at once.

        Raises ``Empty`` when none is, otherwise as :meth:`get`.
        """
        return self.get(block=False)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        raise NotImplementedError

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        raise NotImplementedError

    def delete(self) -> None:
        """Delete the queue and everything it holds, for every user of it: waiting items,
        leases, dead letters, counters and the shutdown state.

        Every handle on the name, old or new, then sees a fresh, empty queue that is not shut
        down; a handle that goes on using the name uses that fresh queue. Raises
        ``BackendConnectionError`` if the server cannot be reached.
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

    def _get_timeout(self, timeout: float) -> float | None:
        """A blocking get's ``timeout`` (not ``None``), checked in the standard library's
        order: a shut-down, empty queue raises ``ShutDown`` before a bad timeout is noticed."""
        if timeout >= _FOREVER:
            return None
        if not timeout >= 0:
            if self._backend.is_shutdown() and self._backend.qsize() == 0:
                raise ShutDown
            raise _negative_timeout()
        return timeout


class Queue(_QueueBase[T]):
    """A first-in, first-out queue with the standard library's ``queue.Queue`` contract.

    ``maxsize`` bounds the number of waiting items as the standard library's does: a number
    ``> 0`` bounds it (a queue is full once it holds ``maxsize`` items or more, so ``2.5`` holds
    3), anything else (0, negative, NaN) leaves it unbounded. ``url`` chooses the backend
    (``None``: ``$DISTQUEUE_URL``, else in-process memory); ``name`` identifies the queue on a
    shared backend (``None``: a fresh unique name); ``serializer`` is ``None`` for the safe
    default, ``"pickle"`` only when asked for, or an object with ``dumps``/``loads``.

    ``client`` is an alternative to ``url``: a ready ``redis.Redis`` (or compatible, e.g. a
    Sentinel's ``master_for()``) that the caller keeps owning.

    Raises ``TypeError`` for a ``maxsize`` that is not a number; ``ValueError`` for a malformed
    or unknown URL, a bad name or serializer, a ``visibility_timeout`` that is not a positive
    finite number of seconds (at most a year), or ``max_deliveries`` below 1; on the memory
    backend, ``ValueError`` for a name this process already uses for another kind of queue.
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
        self._capacity = _capacity(maxsize)
        self._bounded = self._capacity > 0 or maxsize == math.inf
        check_lease_settings(visibility_timeout, max_deliveries)
        self.maxsize = maxsize
        self.visibility_timeout = visibility_timeout
        self.max_deliveries = max_deliveries
        super().__init__(url=url, name=name, serializer=serializer, client=client)
        self._leases = LeaseKeeper(self._backend, visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT)

    def _settings(self) -> dict[str, Any] | None:
        return {
            "maxsize": self.maxsize,
            "visibility_timeout": self.visibility_timeout,
            "max_deliveries": self.max_deliveries,
            "serializer": self.serializer.name,
        }

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
        """Report that the work on one item taken from the queue is finished.

        Every item put counts as an unfinished task until a consumer calls this once for it,
        typically after ``get()`` and the work the item asked for; :meth:`join` waits for that
        count to reach zero. The count belongs to the queue, so it is shared by every handle
        in every process. ``shutdown(immediate=True)`` counts each item it drops as finished.

        With ``visibility_timeout`` set, this acknowledges the calling thread's oldest item
        leased by get() (or, if it holds none, this queue object's oldest), which then leaves
        the queue for good.

        Raises ``ValueError`` when no task is unfinished (more calls than items put); with
        ``visibility_timeout``, ``LeaseLost`` if the item's lease ran out (this process was
        paused or cut off for longer than the timeout) and it was delivered again;
        ``BackendConnectionError`` if the server cannot be reached.
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
        """Wait until every item ever put has been reported finished with :meth:`task_done`.

        Returns ``True`` at once when no task is unfinished, else as soon as the count reaches
        zero, whichever process put the items or finishes them. ``timeout`` (an addition to
        the standard library's signature) bounds the wait: ``False`` means it ran out first.

        Raises ``ValueError`` for a negative timeout, ``BackendConnectionError`` if the server
        cannot be reached.
        """
        return self._backend.join(_wait_for(timeout))

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items or more right now; a snapshot, as
        :meth:`qsize`. Always ``False`` for an unbounded queue."""
        return bool(0 < self.maxsize <= self._backend.qsize())

    def _put_timeout(self, timeout: float) -> float | None:
        """A blocking put's ``timeout`` (not ``None``), checked as the standard library does:
        only for a bounded queue, and after the shutdown check."""
        if not self._bounded or timeout >= _FOREVER:
            return None
        if not timeout >= 0:
            if self._backend.is_shutdown():
                raise ShutDown
            raise _negative_timeout()
        return timeout

    @overload
    def put(
        self,
        item: T,
        block: bool = True,
        timeout: float | None = None,
        *,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: None = None,
        dedup_for: None = None,
    ) -> None: ...

    @overload
    def put(
        self,
        item: T,
        block: bool = True,
        timeout: float | None = None,
        *,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: str,
        dedup_for: float,
    ) -> bool: ...

    def put(
        self,
        item: T,
        block: bool = True,
        timeout: float | None = None,
        *,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: str | None = None,
        dedup_for: float | None = None,
    ) -> bool | None:
        """Add ``item`` to the queue, waiting for room in a bounded queue.

        With ``block`` true, a full queue is waited on: for as long as it takes when
        ``timeout`` is ``None``, else for at most ``timeout`` seconds, after which ``Full`` is
        raised. With ``block`` false the item goes in only if there is room at once, else
        ``Full``; ``timeout`` is then not looked at.

        Raises ``ShutDown`` if the queue has been shut down (also while waiting);
        ``ValueError`` for a negative ``timeout`` when ``block`` is true and the queue is
        bounded (an unbounded queue never waits, so it ignores the timeout, as the standard
        library does); ``SerializationError`` (a ``TypeError``) if a shared backend cannot
        encode the item; ``BackendConnectionError`` if the server cannot be reached. A put that
        raises has added nothing.

        Beyond the standard library (see "Time and rate" in the README): ``delay`` (seconds)
        or ``at`` (a ``datetime`` with a time zone) keep the item out of sight until then, by
        the server's clock; it counts as unfinished at once, never waits for room, and enters
        the queue when due even if that makes it hold more than ``maxsize``. ``dedup_key``
        with ``dedup_for`` (seconds) puts nothing when a put with the same key happened within
        that window (a scheduled item holds its key at least until it is due); the call then
        returns whether it put the item, and ``None`` without a key. Raises ``TypeError`` or
        ``ValueError`` for bad values of these.
        """
        if not block:
            timeout = 0
        elif timeout is not None:
            timeout = self._put_timeout(timeout)
        if delay is None and at is None and dedup_key is None and dedup_for is None:
            self._backend.put(item, self._capacity, timeout)
            return None
        options = put_options(delay, at, dedup_key, dedup_for)
        if options is None:
            self._backend.put(item, self._capacity, timeout)
            return None
        put = self._backend.put_with([item], self._capacity, timeout, options)
        return put if dedup_key is not None else None

    def put_many(
        self,
        items: Iterable[T],
        block: bool = True,
        timeout: float | None = None,
        *,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: str | None = None,
        dedup_for: float | None = None,
    ) -> bool | None:
        """Add all ``items`` in one atomic step (one round trip on a server).

        Waits, as :meth:`put` does, until there is room for all of them; no other item is put
        between them. While it waits, smaller puts that fit may go ahead of it, but only until
        ``maxsize`` items have passed it: then it holds the room that frees up, and later puts
        wait until it is in (or gives up).

        Raises ``ValueError`` if they could never fit (more than ``maxsize``), else as
        :meth:`put`; on any error none of them was put. ``delay``, ``at``, ``dedup_key`` and
        ``dedup_for`` are as for :meth:`put`, for the whole batch (one key for all of it).
        """
        options = put_options(delay, at, dedup_key, dedup_for)
        batch = list(items)
        if self._capacity and len(batch) > self._capacity:
            raise ValueError(
                f"put_many() of {len(batch)} items can never fit a queue of maxsize {self.maxsize}"
            )
        if not block:
            wait: float | None = 0
        else:
            wait = None if timeout is None else self._put_timeout(timeout)
        if options is None or not batch:
            self._backend.put_many(batch, self._capacity, wait)
            return None if dedup_key is None else bool(batch)
        put = self._backend.put_with(batch, self._capacity, wait, options)
        return put if dedup_key is not None else None

    def scheduled(self) -> int:
        """How many items put with a ``delay`` or ``at`` are not yet due: a snapshot, as
        :meth:`qsize` (which counts only the items that are visible).

        Raises ``BackendConnectionError`` when the server cannot be reached.
        """
        return self._backend.scheduled()

    # -- limits ----------------------------------------------------------------------------

    def set_limits(
        self, *, rate: int | None = None, per: float = 1.0, concurrency: int | None = None
    ) -> None:
        """Limit how fast and how much consumers take, for every user of the queue, on every
        machine (the limits are kept with the queue, on the server).

        ``rate``: at most this many items taken (by get, get_many or a lease) in any window of
        ``per`` seconds; ``concurrency``: at most this many items leased at once (by workers,
        ``get_message`` or a ``visibility_timeout`` queue; plain gets are not held back by
        it). ``None`` lifts a limit; the call replaces the limits set before. A consumer
        held back waits, as it would on an empty queue, until the limit lets it take.

        Raises ``TypeError`` or ``ValueError`` for bad values, ``BackendConnectionError`` if
        the server cannot be reached.
        """
        self._backend.set_limits(check_limits(rate, per, concurrency))

    def limits(self) -> Limits:
        """The limits set with :meth:`set_limits`."""
        return self._backend.limits()

    def pause(self, seconds: float) -> None:
        """Let no consumer anywhere take an item for ``seconds`` from now (the server's
        clock); a pause already running that ends later stays. For a task told to back off,
        say by an HTTP 429 from the service it calls. Items may still be put meanwhile.

        Raises ``TypeError`` or ``ValueError`` unless ``seconds`` is a finite number ``>= 0``,
        ``BackendConnectionError`` if the server cannot be reached.
        """
        self._backend.pause(check_seconds(seconds, "seconds"))

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Take the next item off the queue, waiting for one.

        With ``block`` true, an empty queue is waited on: for as long as it takes when
        ``timeout`` is ``None``, else for at most ``timeout`` seconds, after which ``Empty``
        is raised. With ``block`` false an item is returned only if one is waiting at once,
        else ``Empty``; ``timeout`` is then not looked at.

        Raises ``ShutDown`` once the queue is shut down and empty (at once after an immediate
        shutdown, which empties it), also while waiting; ``ValueError`` for a negative
        ``timeout`` when ``block`` is true; ``DeserializationError`` if the next stored
        payload cannot be decoded (it is moved to the queue's dead-letter list, and the next
        call goes on with the next item); ``BackendConnectionError`` if the server cannot be
        reached.
        """
        if not block:
            timeout = 0
        elif timeout is not None:
            timeout = self._get_timeout(timeout)
        if self.visibility_timeout is None:
            return self._backend.get(timeout)  # type: ignore[no-any-return]
        return self._take_leases(1, timeout)[0]

    def _take_leases(self, n: int, timeout: float | None) -> list[T]:
        assert self.visibility_timeout is not None
        leases = self._backend.lease(n, timeout, self.visibility_timeout, self.max_deliveries)
        for lease in leases:
            self._leases.hold(lease, for_task_done=True)
        return [lease.item for lease in leases]

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> list[T]:
        """Remove and return up to ``n`` items in one round trip, in the order get() would.

        Waits, as :meth:`get` does, until at least one item is available, then returns the
        items available at that moment, at most ``n`` (counts above 2**31 - 1 are taken as
        that). Raises ``TypeError`` if ``n`` is not an int (a bool is refused), ``ValueError``
        if it is below 1, else as :meth:`get`; a payload that cannot be decoded is moved to
        the dead-letter list and left out, and ``DeserializationError`` is raised only when
        no item of the batch could be decoded.
        """
        n = _check_count(n, "get_many")
        wait = 0 if not block else None if timeout is None else self._get_timeout(timeout)
        if self.visibility_timeout is None:
            return self._backend.get_many(n, wait)
        return self._take_leases(n, wait)

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
        n = _check_count(n, "get_messages")
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
        """How many items consumers hold under a lease right now, not yet acknowledged: a
        snapshot, as :meth:`qsize`."""
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
        """Close the queue to new items, for every user of it in every process.

        From now on every put raises ``ShutDown``. Consumers may still take the items that are
        waiting and see ``ShutDown`` once the queue is empty; with ``immediate`` true those
        items are dropped instead, each counted as a finished task, so consumers see
        ``ShutDown`` at once and a ``join()`` with nothing else unfinished returns. Wakes every
        blocked ``put`` and ``get`` (and, with ``immediate``, ``join``) in every process.
        Calling it again is harmless. Raises ``BackendConnectionError`` if the server cannot be
        reached.
        """
        self._backend.shutdown(bool(immediate))


class LifoQueue(Queue[T]):
    """A stack with the queue API: ``get`` takes the item put last."""

    _kind = Kind.LIFO


class PriorityQueue(Queue[T]):
    """A queue whose ``get`` returns the smallest waiting item, by Python's ``<``.

    The usual items are ``(priority, data)`` tuples, so the lowest priority number goes first.
    Ties (items that compare equal) leave in the order they arrived, and putting one item twice
    gives two entries. Where Python has no answer, every backend applies one rule: values of
    types Python cannot compare (an int and a str) go by type: numbers, bytes, str, dates and
    times, UUIDs, tuples, lists, then everything else; values it cannot order at all (two
    dicts behind one priority) go by arrival; and NaN is the largest number, above infinity,
    every NaN equal to every other (so ``(nan, "a")`` comes before ``(nan, "b")``).
    """

    _kind = Kind.PRIORITY


class SimpleQueue(_QueueBase[T]):
    """An unbounded first-in, first-out queue without task tracking, as ``queue.SimpleQueue``.

    Its ``put`` never waits. On the memory backend it takes no lock either, so code that
    interrupts a thread inside a ``put`` or ``get`` of the same queue (a signal handler, a
    finalizer run by the garbage collector) may put safely. On the memory backend the name of a
    ``SimpleQueue`` cannot also be used by a ``Queue`` of this process (``ValueError``).
    """

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

    def _open_backend(self, client: Any) -> QueueBackend:
        if client is None and self.url is not None and self.url.lower() == "memory://":
            note_memory_queue(self.name, self._kind.value, self._settings())
            return SimpleMemoryBackend(self.name)
        return super()._open_backend(client)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``. There is always room, so this never waits; ``block`` and ``timeout``
        are accepted for symmetry with :meth:`Queue.put` and not looked at.

        Raises ``SerializationError`` (a ``TypeError``) if a shared backend cannot encode the
        item, ``BackendConnectionError`` if the server cannot be reached.
        """
        self._backend.put(item, 0, None)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Take the next item, waiting for one as :meth:`Queue.get` does, and raising as it
        does (there is no shutdown)."""
        if not block:
            timeout = 0
        elif timeout is not None:
            timeout = self._get_timeout(timeout)
        return self._backend.get(timeout)  # type: ignore[no-any-return]
