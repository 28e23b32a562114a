"""Queue, LifoQueue and PriorityQueue for asyncio code: ``asyncio.Queue``'s interface and
semantics (Python 3.13), on distqueue's backends.

The same URL and name is the same queue as :class:`distqueue.Queue`'s: same keys, scripts and
payloads on Redis, the same store in memory, so blocking and asyncio code, in one process or
many, put and get on one queue.

**What awaits and what does not.** ``asyncio.Queue`` has a few methods that return at once:
``put_nowait``, ``get_nowait``, ``qsize``, ``empty``, ``full``, ``task_done`` and
``shutdown``. In memory they are exactly that. On Redis each needs the server, and a coroutine
cannot wait for it without awaiting, so:

* ``task_done()`` and ``shutdown()`` send their call in the background and return a future of
  its outcome: ``q.task_done()`` works as with asyncio (``join()`` and ``aclose()`` wait for
  every such call first), and ``await q.task_done()`` also tells you how it went (a
  ``ValueError`` for one call too many, ``LeaseLost``, ``BackendConnectionError``), as
  ``await q.shutdown()`` waits until the queue is shut down for everyone.
* ``put_nowait``, ``get_nowait``, ``qsize``, ``empty``, ``full``, ``unfinished_tasks`` and
  ``is_shutdown`` cannot hand their work to the background: they return its result. They make
  one round trip through a blocking client of their own (opened at first use), which stalls
  the event loop for that round trip: about a tenth of a millisecond on a local network, and
  at most one second when the server does not answer (a single attempt, no retry; then
  ``BackendConnectionError``). They exist so that code written for ``asyncio.Queue`` runs
  unchanged; code that can await should prefer ``await q.put(item, timeout=0)``, ``await
  q.get(timeout=0)`` (``QueueFull``/``QueueEmpty`` at once, never stalling the loop) and ``await
  q.size()``. A ``get_nowait`` whose reply is lost still loses nothing: what the server took
  is given back.

**Timeouts** are asyncio's: ``asyncio.timeout()`` or ``asyncio.wait_for`` around any call.
``put``, ``get`` and their batch and lease forms also take ``timeout=`` (seconds, as in the
blocking queues; ``0`` never waits), which the server enforces without cancelling anything.

**Cancellation** never loses an item: a ``get`` cancelled while its take was on the way hands
what the server took to the next waiting task, or back to the front of the queue (leases
without counting a delivery). A ``put`` cancelled while its script was on the way may have
added its item (never twice); one cancelled while it waited for room added nothing.

**Waiting** is shared: all tasks of a process waiting in ``get`` on one queue object wait
through one connection, woken in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import types
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar, Generic, TypeVar, overload

from ..backends.base import DeadLetter, Kind, Lease, Limits
from ..errors import Empty, Full, LeaseLost, ShutDown
from ..leases import DEFAULT_VISIBILITY_TIMEOUT, check_lease_settings, retry_delay_for
from ..options import check_limits, check_seconds, put_options
from ..queue import _capacity, _check_count, _wait_for, queue_address
from ..serializers import Serializer, get_serializer
from ..url import open_async_backend
from .errors import QueueEmpty, QueueFull, QueueShutDown
from .immediate import open_immediate
from .leases import AsyncLeaseKeeper, Message

T = TypeVar("T")

__all__ = ["LifoQueue", "PriorityQueue", "Queue"]

_ALL = 2**31 - 1


class Queue(Generic[T]):
    """A first-in, first-out queue with ``asyncio.Queue``'s contract, across processes and
    machines (see the module's text).

    ``maxsize`` bounds the number of waiting items as ``asyncio.Queue``'s does (a number
    ``> 0`` bounds it; 0, negative numbers and NaN do not). ``url``, ``name``, ``serializer``,
    ``visibility_timeout`` and ``max_deliveries`` are :class:`distqueue.Queue`'s; ``client``
    is a ready ``redis.asyncio.Redis`` (or ``RedisCluster``) instead of ``url``, which the
    caller keeps owning (the calls that cannot await then raise ``TypeError``: they need a
    URL to open their blocking client).

    Raises ``TypeError`` for a ``maxsize`` that is no number or a ``client`` that is not an
    asyncio one, ``ValueError`` for a malformed URL, a bad name, serializer or lease setting,
    as :class:`distqueue.Queue` does.
    """

    _kind: ClassVar[Kind] = Kind.FIFO

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
        self._maxsize = maxsize
        self.name, self.url = queue_address(name, url, client)
        self.serializer = get_serializer(serializer)
        self.visibility_timeout = visibility_timeout
        self.max_deliveries = max_deliveries
        self._backend: Any = open_async_backend(
            self.url, self.name, self._kind, self.serializer, client
        )
        self._leases = AsyncLeaseKeeper(
            self._backend, visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT
        )
        self._pending: set[asyncio.Future[Any]] = set()  # task_done() and shutdown() calls
        self._now_backend: Any = None
        self._closed = False

    __class_getitem__ = classmethod(types.GenericAlias)  # type: ignore[var-annotated]

    @property
    def maxsize(self) -> int:
        """Number of items allowed in the queue (as given)."""
        return self._maxsize

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} name={self.name!r} url={self.url!r} maxsize={self._maxsize!r}>"
        )

    # -- putting ---------------------------------------------------------------------------

    def _put_timeout(self, timeout: float | None) -> float | None:
        if not self._bounded or timeout is None:
            return None
        return _wait_for(timeout)

    @overload
    async def put(
        self,
        item: T,
        *,
        timeout: float | None = None,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: None = None,
        dedup_for: None = None,
    ) -> None: ...

    @overload
    async def put(
        self,
        item: T,
        *,
        timeout: float | None = None,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: str,
        dedup_for: float,
    ) -> bool: ...

    async def put(
        self,
        item: T,
        *,
        timeout: float | None = None,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: str | None = None,
        dedup_for: float | None = None,
    ) -> bool | None:
        """Put ``item`` into the queue, waiting while it is full.

        ``timeout`` (seconds; ``0``: do not wait) bounds the wait: ``QueueFull`` when it runs
        out. Raises ``QueueShutDown`` if the queue is shut down (also while waiting),
        ``ValueError`` for a negative timeout on a bounded queue, ``SerializationError`` (a
        ``TypeError``) if a shared backend cannot encode the item, ``BackendConnectionError``
        if the server cannot be reached. A put that raises ``QueueFull`` or ``QueueShutDown``
        added nothing.

        ``delay``, ``at``, ``dedup_key`` and ``dedup_for`` are :meth:`distqueue.Queue.put`'s
        (see "Time and rate" in the README), with the same state on the server: the item is
        kept out of sight until ``delay`` seconds from now or ``at`` (by the server's clock),
        and with a ``dedup_key`` nothing is put when a put with that key happened within
        ``dedup_for`` seconds; the call then returns whether it put the item (``None``
        without a key). Raises ``TypeError`` or ``ValueError`` for bad values of these,
        before anything is sent.
        """
        options = put_options(delay, at, dedup_key, dedup_for)
        wait = self._put_timeout(timeout)
        try:
            if options is None:
                await self._backend.put(item, self._capacity, wait)
                return None
            put = bool(await self._backend.put_with([item], self._capacity, wait, options))
        except Full:
            raise QueueFull from None
        except ShutDown:
            raise QueueShutDown from None
        return put if dedup_key is not None else None

    async def put_many(
        self,
        items: Iterable[T],
        *,
        timeout: float | None = None,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        dedup_key: str | None = None,
        dedup_for: float | None = None,
    ) -> bool | None:
        """Put all ``items`` in one atomic step (one round trip on a server), waiting until
        all fit; while it waits, smaller puts may go ahead of it, as with
        :meth:`distqueue.Queue.put_many`. Raises ``ValueError`` if they could never fit (more
        than ``maxsize``), else as :meth:`put`; on any error none of them was put.
        ``delay``, ``at``, ``dedup_key`` and ``dedup_for`` are as for :meth:`put`, for the
        whole batch (one key for all of it); with a key, returns whether the batch was put."""
        options = put_options(delay, at, dedup_key, dedup_for)
        batch = list(items)
        if self._capacity and len(batch) > self._capacity:
            raise ValueError(
                f"put_many() of {len(batch)} items can never fit a queue of maxsize {self._maxsize}"
            )
        wait = self._put_timeout(timeout)
        try:
            if options is None or not batch:
                await self._backend.put_many(batch, self._capacity, wait)
                return None if dedup_key is None else bool(batch)
            put = bool(await self._backend.put_with(batch, self._capacity, wait, options))
        except Full:
            raise QueueFull from None
        except ShutDown:
            raise QueueShutDown from None
        return put if dedup_key is not None else None

    async def scheduled(self) -> int:
        """How many items put with a ``delay`` or ``at`` are not yet due: a snapshot
        (:meth:`size` counts only the items that are visible). Raises
        ``BackendConnectionError`` when the server cannot be reached."""
        return int(await self._backend.scheduled())

    # -- limits ----------------------------------------------------------------------------

    async def set_limits(
        self, *, rate: int | None = None, per: float = 1.0, concurrency: int | None = None
    ) -> None:
        """Limit how fast (``rate`` items per ``per`` seconds) and how much (``concurrency``
        items leased at once) consumers take, for every user of the queue, blocking or
        asyncio, on every machine: :meth:`distqueue.Queue.set_limits`, the same limits on the
        server. A get held back by a limit waits as on an empty queue; one cancelled while
        it waits takes nothing and uses up none of the rate.

        Raises ``TypeError`` or ``ValueError`` for bad values, ``BackendConnectionError`` if
        the server cannot be reached.
        """
        await self._backend.set_limits(check_limits(rate, per, concurrency))

    async def limits(self) -> Limits:
        """The limits set with :meth:`set_limits` (here or through a blocking handle).
        Raises ``BackendConnectionError`` if the server cannot be reached."""
        limits: Limits = await self._backend.limits()
        return limits

    async def pause(self, seconds: float) -> None:
        """Let no consumer anywhere take an item for ``seconds`` from now (the server's
        clock); a pause already running that ends later stays (see
        :meth:`distqueue.Queue.pause`). Items may still be put meanwhile.

        Raises ``TypeError`` or ``ValueError`` unless ``seconds`` is a finite number ``>= 0``,
        ``BackendConnectionError`` if the server cannot be reached.
        """
        await self._backend.pause(check_seconds(seconds, "seconds"))

    def put_nowait(self, item: T) -> None:
        """Put ``item`` if there is room at once, else raise ``QueueFull``; otherwise raises as
        :meth:`put`. On Redis: one blocking round trip (see the module's text)."""
        backend = self._now()
        try:
            backend.put(item, self._capacity, 0)
        except Full:
            raise QueueFull from None
        except ShutDown:
            raise QueueShutDown from None

    # -- getting ---------------------------------------------------------------------------

    def _get_timeout(self, timeout: float | None) -> float | None:
        if timeout is None:
            return None
        return _wait_for(timeout)

    async def get(self, *, timeout: float | None = None) -> T:
        """Remove and return the next item, waiting for one.

        ``timeout`` (seconds; ``0``: do not wait) bounds the wait: ``QueueEmpty`` when it runs
        out. With ``visibility_timeout`` the item is leased until :meth:`task_done`. Raises
        ``QueueShutDown`` once the queue is shut down and empty (also while waiting),
        ``ValueError`` for a negative timeout, ``DeserializationError`` if the next payload
        cannot be decoded (it becomes a dead letter), ``BackendConnectionError`` if the server
        cannot be reached.
        """
        return (await self._get(1, self._get_timeout(timeout)))[0]

    async def get_many(self, n: int, *, timeout: float | None = None) -> list[T]:
        """Remove and return up to ``n`` items in one round trip, waiting for the first, in
        the order :meth:`get` would. Raises ``TypeError`` if ``n`` is not an int (a bool is
        refused), ``ValueError`` if it is below 1, else as :meth:`get`; an undecodable payload
        becomes a dead letter and is left out."""
        return await self._get(_check_count(n, "get_many"), self._get_timeout(timeout))

    async def _get(self, n: int, timeout: float | None) -> list[T]:
        backend = self._backend
        try:
            if self.visibility_timeout is None:
                items: list[T] = await backend.get_many(n, timeout)
                return items
            leases = await backend.lease(n, timeout, self.visibility_timeout, self.max_deliveries)
        except Empty:
            raise QueueEmpty from None
        except ShutDown:
            raise QueueShutDown from None
        for lease in leases:
            self._leases.hold(lease, for_task_done=True)
        return [lease.item for lease in leases]

    def get_nowait(self) -> T:
        """Remove and return an item if one is waiting at once, else raise ``QueueEmpty``;
        otherwise raises as :meth:`get`. On Redis: one blocking round trip (see the module's
        text)."""
        backend = self._now()
        try:
            if self.visibility_timeout is None:
                item: T = self._take_now(backend, 0, 0)[0]
                return item
            leases = self._take_now(backend, self.visibility_timeout, self.max_deliveries)
        except Empty:
            raise QueueEmpty from None
        except ShutDown:
            raise QueueShutDown from None
        self._leases.hold(leases[0], for_task_done=True)
        item = leases[0].item
        return item

    # -- explicit leases -------------------------------------------------------------------

    async def get_message(self, *, timeout: float | None = None) -> Message[T]:
        """Lease the next item as a :class:`~distqueue.aio.Message` to ``await ack()`` or
        ``nack()``; waits and raises as :meth:`get`. The lease lasts ``visibility_timeout``
        (30 s without one) and is renewed in the background while this object holds it."""
        return (await self.get_messages(1, timeout=timeout))[0]

    async def get_messages(self, n: int, *, timeout: float | None = None) -> list[Message[T]]:
        """Lease up to ``n`` items in one round trip, each as a :class:`Message`."""
        n = _check_count(n, "get_messages")
        lease_seconds = self.visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT
        try:
            leases: list[Lease] = await self._backend.lease(
                n, self._get_timeout(timeout), lease_seconds, self.max_deliveries
            )
        except Empty:
            raise QueueEmpty from None
        except ShutDown:
            raise QueueShutDown from None
        for lease in leases:
            self._leases.hold(lease, for_task_done=False)
        return [Message(self._leases, lease) for lease in leases]

    @contextlib.asynccontextmanager
    async def lease(
        self, *, timeout: float | None = None, retry_delay: float | None = None
    ) -> AsyncIterator[T]:
        """Lease the next item for the body of an ``async with`` block: acknowledged when the
        block succeeds; when it raises (cancellation included), given back and delivered again
        after ``retry_delay`` seconds (default 1, 2, 4 ... 60 s by delivery count), and the
        exception propagates."""
        message = await self.get_message(timeout=timeout)
        try:
            yield message.item
        except BaseException:
            delay = retry_delay_for(message.deliveries) if retry_delay is None else retry_delay
            # given back even when this task is being cancelled
            await asyncio.shield(message.nack(delay))
            raise
        await message.ack()

    async def ack_many(self, messages: Iterable[Message[T]]) -> int:
        """Acknowledge several messages in one round trip; how many were still held."""
        ids = [message.id for message in messages]
        for lease_id in ids:
            self._leases.release(lease_id)
        return int(await self._backend.ack(ids)) if ids else 0

    async def in_flight(self) -> int:
        """How many items consumers hold under a lease right now (a snapshot)."""
        return int(await self._backend.in_flight())

    # -- tasks -----------------------------------------------------------------------------

    def task_done(self) -> asyncio.Future[None]:
        """Report that the work on one item taken from the queue is finished (see
        :meth:`distqueue.Queue.task_done`; with ``visibility_timeout``, the calling task's
        oldest lease is acknowledged).

        In memory this is done when it returns, and ``ValueError`` (more calls than items) is
        raised at once. On Redis the call goes to the server in the background: the returned
        future (await it, or not) ends with its outcome: ``ValueError``, ``LeaseLost`` if the
        lease ran out and the item was delivered again, ``BackendConnectionError``.
        :meth:`join` and :meth:`aclose` wait for these calls first.
        """
        lease_id = None
        if self.visibility_timeout is not None:
            lease_id = self._leases.oldest_for_task_done()
        if not self._backend.shared:
            return self._done_now(lambda: self._task_done_now(lease_id))
        return self._background(self._task_done(lease_id))

    def _task_done_now(self, lease_id: str | None) -> None:
        sync = self._backend.sync
        if lease_id is None:
            sync.task_done()
        elif sync.ack([lease_id]) == 0:
            raise self._lease_lost()

    def _lease_lost(self) -> LeaseLost:
        return LeaseLost(
            f"queue {self.name!r}: the lease on this item ran out before task_done() and the "
            "item was delivered again; this call counted nothing"
        )

    async def _task_done(self, lease_id: str | None) -> None:
        if lease_id is None:
            await self._backend.task_done()
        elif await self._backend.ack([lease_id]) == 0:
            raise self._lease_lost()

    async def join(self, *, timeout: float | None = None) -> bool:
        """Wait until every item put so far has been reported done with :meth:`task_done`
        (by anyone, anywhere). Returns ``True``; ``False`` if ``timeout`` (seconds) ran out
        first. Raises ``ValueError`` for a negative timeout, ``BackendConnectionError``."""
        wait = _wait_for(timeout)
        await self._settle_pending()
        return bool(await self._backend.join(wait))

    def shutdown(self, immediate: bool = False) -> asyncio.Future[None]:
        """Shut the queue down for every user of it (see :meth:`distqueue.Queue.shutdown`):
        puts raise ``QueueShutDown``; gets too once the queue is empty, at once with
        ``immediate`` (which drops the waiting items, each counted as done). Wakes every
        blocked call in every process.

        In memory this is done when it returns; on Redis the returned future ends when it is
        (``await q.shutdown()``), or with ``BackendConnectionError``."""
        if not self._backend.shared:
            return self._done_now(lambda: self._backend.sync.shutdown(bool(immediate)))
        return self._background(self._backend.shutdown(bool(immediate)))

    def _done_now(self, call: Any) -> asyncio.Future[None]:
        call()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def _background(self, coroutine: Any) -> asyncio.Future[None]:
        task: asyncio.Future[None] = asyncio.ensure_future(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _settle_pending(self) -> None:
        """Wait for the task_done() and shutdown() calls sent so far (their errors are the
        futures' own)."""
        while self._pending:
            sent = list(self._pending)
            await asyncio.wait(sent)
            self._pending.difference_update(sent)  # their callbacks may not have run yet

    # -- sizes and state -------------------------------------------------------------------

    async def size(self) -> int:
        """How many items are waiting right now: a snapshot (awaited; see :meth:`qsize`)."""
        return int(await self._backend.qsize())

    def qsize(self) -> int:
        """How many items are waiting right now: a snapshot. On Redis: one blocking round
        trip (see the module's text); ``await q.size()`` is the same without it."""
        backend = self._now()
        return int(backend.qsize())

    def empty(self) -> bool:
        """Whether no item is waiting right now; a snapshot, as :meth:`qsize`."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items or more; a snapshot, as :meth:`qsize`.
        Always ``False`` for an unbounded queue (without asking the server)."""
        if not self._bounded:
            return False
        return bool(0 < self._maxsize <= self.qsize())

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet reported done; as :meth:`qsize`, a blocking round trip on
        Redis."""
        backend = self._now()
        return int(backend.unfinished_tasks())

    @property
    def is_shutdown(self) -> bool:
        """Whether the queue was shut down, by anyone; as :meth:`qsize`, a blocking round
        trip on Redis."""
        backend = self._now()
        return bool(backend.is_shutdown())

    # -- dead letters, delete, close -------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, each with its error."""
        letters: list[DeadLetter] = await self._backend.dead_letters(limit)
        return letters

    async def requeue_dead(self, limit: int | None = None) -> int:
        """Put dead letters (all, or the oldest ``limit``) back on the queue; how many."""
        return int(await self._backend.requeue_dead(_ALL if limit is None else limit))

    async def purge_dead(self, limit: int | None = None) -> int:
        """Delete dead letters (all, or the oldest ``limit``) for good; how many."""
        return int(await self._backend.purge_dead(_ALL if limit is None else limit))

    async def delete(self) -> None:
        """Delete the queue and all it holds, for every user of it (see
        :meth:`distqueue.Queue.delete`)."""
        await self._backend.delete()

    async def aclose(self) -> None:
        """Wait for the background calls, stop renewing leases, stop waiting, and release the
        connections. Items stay on the server; items still leased by this object come back
        once their lease runs out."""
        if self._closed:
            return
        self._closed = True
        await self._settle_pending()
        await self._leases.aclose()
        await self._backend.aclose()
        if self._now_backend is not None and self._backend.shared:
            self._now_backend.close()
            self._now_backend = None

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- calls that cannot await -----------------------------------------------------------

    def _now(self) -> Any:
        """The blocking backend for the calls that cannot await (see the module's text)."""
        if self._now_backend is None:
            if not self._backend.shared:
                self._now_backend = self._backend.sync
            elif self.url is None:
                raise TypeError(
                    f"{type(self).__name__} on a client object: put_nowait(), get_nowait(), "
                    "qsize(), empty(), full(), unfinished_tasks and is_shutdown need a url; "
                    "await put(timeout=0), get(timeout=0) or size() instead"
                )
            else:
                self._now_backend = open_immediate(self.url, self._backend)
        return self._now_backend

    def _take_now(self, backend: Any, lease_seconds: float, max_deliveries: int) -> Any:
        if not self._backend.shared:
            if lease_seconds:
                return backend.lease(1, 0, lease_seconds, max_deliveries)
            return backend.get_many(1, 0)
        return backend.take(self._backend, lease_seconds, max_deliveries)


class LifoQueue(Queue[T]):
    """A stack with the queue API: ``get`` takes the item put last (``asyncio.LifoQueue``)."""

    _kind = Kind.LIFO


class PriorityQueue(Queue[T]):
    """A queue whose ``get`` returns the smallest waiting item (``asyncio.PriorityQueue``),
    ordered as :class:`distqueue.PriorityQueue` orders them, on every backend."""

    _kind = Kind.PRIORITY
