"""The shared wait of :mod:`.aio`: the tasks of one process waiting for items of one queue
object stand in line, and one task waits on the server for all of them (see :mod:`.aio`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from ...errors import BackendError, Empty, ShutDown
from .. import connection as _connection
from ..base import Deadline
from .protocol import SHUT_DOWN

if TYPE_CHECKING:
    from .aio import AsyncRedisBackend

logger = logging.getLogger("distqueue.redis")

_MOST = 2**31 - 1


class _Waiter:
    """A task in line for items: how many it wants, on what terms, and where to hand them."""

    __slots__ = ("at", "future", "lease_ms", "max_deliveries", "n")

    def __init__(
        self, n: int, lease_ms: int, max_deliveries: int, at: float | None, future: Any
    ) -> None:
        self.n = n
        self.lease_ms = lease_ms
        self.max_deliveries = max_deliveries
        self.at = at
        self.future: asyncio.Future[list[Any]] = future


class Consumers:
    """The tasks of this process waiting for items of one queue, and the one task that waits
    on the server for them (see the module's text)."""

    def __init__(self, backend: AsyncRedisBackend) -> None:
        self._backend = backend
        self._line: deque[_Waiter] = deque()
        self._server: asyncio.Task[None] | None = None
        self._closed = False
        self._trying = 0  # takes sent straight from a calling task, not yet answered

    @property
    def waiting(self) -> int:
        """Tasks in line right now."""
        return sum(1 for waiter in self._line if not waiter.future.done())

    async def take(
        self, n: int, timeout: float | None, lease_ms: int, max_deliveries: int
    ) -> list[Any]:
        """Up to ``n`` items' raw reply (see :meth:`QueueProtocol.take_step`), waiting for the
        first; ``Empty`` when ``timeout`` runs out, ``ShutDown``."""
        backend = self._backend
        deadline = Deadline(timeout)
        first = not self._line and not self._trying
        if first:
            # Nobody of this process is in line or trying: one round trip, from this task.
            self._trying += 1
            try:
                result = await backend.take_once(n, lease_ms, max_deliveries, deadline.at)
            finally:
                self._trying -= 1
            if isinstance(result, list):
                return result
            if result == SHUT_DOWN:
                raise ShutDown
            if timeout is not None and timeout < _connection.MIN_BLOCK:
                raise Empty
        loop = asyncio.get_running_loop()
        waiter = _Waiter(n, lease_ms, max_deliveries, deadline.at, loop.create_future())
        if first:
            self._line.appendleft(waiter)  # those in line came while this one tried
        else:
            self._line.append(waiter)
        timer = None
        if timeout is not None:
            timer = loop.call_later(max(0.0, timeout), _expire, waiter.future)
        if self._server is None:
            self._server = loop.create_task(self._serve())
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed over just as this task was cancelled: to the next in line, or back.
                backend.hand_back(lease_ms, max_deliveries, future.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(ValueError):
                self._line.remove(waiter)

    def offer(self, lease_ms: int, max_deliveries: int, units: list[Any]) -> list[Any]:
        """Hand ``units`` (raw values, or (token, raw, deliveries) triples) to the tasks in
        line that take them on these terms, in line order; what is left over."""
        for waiter in self._line:
            if not units:
                break
            if (
                waiter.future.done()
                or waiter.lease_ms != lease_ms
                or waiter.max_deliveries != max_deliveries
            ):
                continue
            share, units = units[: waiter.n], units[waiter.n :]
            waiter.future.set_result(flatten(share, lease_ms))
        return units

    def _head(self) -> list[_Waiter]:
        """The live tasks at the head of the line that one take serves: same terms."""
        line = self._line
        while line and line[0].future.done():
            line.popleft()
        if not line:
            return []
        first = line[0]
        group = []
        total = 0
        for waiter in line:
            if waiter.future.done():
                continue
            if waiter.lease_ms != first.lease_ms or waiter.max_deliveries != first.max_deliveries:
                break
            group.append(waiter)
            total += waiter.n
            if total >= _MOST:
                break
        return group

    async def _serve(self) -> None:
        backend = self._backend
        protocol = backend.protocol
        try:
            while True:
                group = self._head()
                if not group:
                    return
                first = group[0]
                want = min(_MOST, sum(waiter.n for waiter in group))
                ends = [waiter.at for waiter in group]
                wait_until = None if None in ends else max(at for at in ends if at is not None)
                try:
                    result = await backend.take_once(
                        want, first.lease_ms, first.max_deliveries, wait_until
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    for waiter in group:
                        if not waiter.future.done():
                            waiter.future.set_exception(exc)
                    continue
                if isinstance(result, list):
                    units = units_of(result, first.lease_ms)
                    rest = self.offer(first.lease_ms, first.max_deliveries, units)
                    if rest:  # the tasks left meanwhile: back, in a task no close cancels
                        backend.spawn(
                            backend.give_back(first.lease_ms, flatten(rest, first.lease_ms))
                        )
                    continue
                if result == SHUT_DOWN:
                    for waiter in self._line:
                        if not waiter.future.done():
                            waiter.future.set_exception(ShutDown())
                    continue
                wait = min(protocol.block_slice, protocol.until_lapse(result) or _MOST)
                woke = await backend.block(protocol.wait_keys, max(_connection.MIN_BLOCK, wait))
                if woke is None:
                    continue
                if protocol.shutdown_woke(woke) or not self._head():
                    # The shutdown token goes on to the next blocked client; an item's token
                    # for the tasks that left meanwhile too, so that another consumer of the
                    # queue is not left asleep.
                    await backend.drive(protocol.pass_on(woke))
        except asyncio.CancelledError:
            raise
        except Exception:  # a give-back or hand-on that failed: logged by the backend
            logger.exception("queue %r: the task waiting for items failed", backend.name)
            for waiter in self._line:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        BackendError(f"queue {backend.name!r}: waiting for items failed")
                    )
        finally:
            self._server = None
            if not self._closed and self._head():
                # Tasks joined the line as this one ended: serve them.
                self._server = asyncio.get_running_loop().create_task(self._serve())

    async def aclose(self) -> None:
        self._closed = True
        server = self._server
        if server is not None:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        for waiter in self._line:
            if not waiter.future.done():
                waiter.future.set_exception(
                    BackendError(f"queue {self._backend.name!r} was closed")
                )


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(Empty())


def units_of(result: list[Any], lease_ms: int) -> list[Any]:
    """A take's reply as the units handed out: raw values, or (token, raw, deliveries)."""
    if not lease_ms:
        return result
    return [tuple(result[i : i + 3]) for i in range(0, len(result), 3)]


def flatten(units: list[Any], lease_ms: int) -> list[Any]:
    """Units back in the shape of a take's reply."""
    if not lease_ms:
        return units
    return [part for unit in units for part in unit]
