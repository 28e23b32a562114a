"""The asyncio driver of :class:`~.protocol.QueueProtocol`: the same steps as
:class:`~.backend.RedisBackend`, performed with redis-py's asyncio clients.

Nothing about the queue's behaviour is decided here: scripts, arguments, request ids, what a
reply means and when to give up all come from the protocol, so a queue reached from blocking
and from asyncio code is one queue (same keys, scripts and payloads). This module adds only
what asyncio needs:

* **I/O**: scripts as Redis Functions (FCALL), or by EVALSHA where there are none (see
  :mod:`~..scripts`), reads as commands, waits as BLPOP on a client of their own. Connection
  failures are retried as a whole under the same request id, following
  :class:`~..connection.RetryBudget` (which decides; this module only sleeps), and errors are
  translated by :func:`~.backend.translate`.
* **Shared waiting** (:class:`.consumers.Consumers`): however many tasks of one process wait in
  ``get()`` on one queue object, one task waits on the server for them, on one connection. The
  waiting tasks stand in line; each take asks for as many items as the tasks at the head of the
  line want, in one round trip, and hands them out in line order, as ``asyncio.Queue`` wakes
  its getters. Puts waiting for room and ``join`` calls share their waits on the server the
  same way (:class:`.waits.SharedWaits`).
* **Cancellation**: a take that was sent is never forgotten. If the task that sent it is
  cancelled (``asyncio.timeout``, ``wait_for``, ``Task.cancel``), the same call is sent again in
  the background under the same request id: the server runs a take once and remembers its
  reply, so the second send learns what the first one took (or takes it now, if the first
  never arrived). Those items go to the next task in line, or back to the front of the queue
  (``giveback.lua``), leases without counting a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import redis.exceptions

from ...errors import WrongTypeError
from ...serializers import Serializer
from .. import connection as _connection
from ..base import DeadLetter, Kind, Lease, Limits, PutOptions
from ..connection import RETRYABLE, RedisOptions, Retrier, RetryBudget
from ..scripts import ServerTraits
from .aioscripts import AsyncScript, ConnectionLane
from .backend import _REDIS_ERRORS, _block_slice, translate, wrong_type
from .consumers import Consumers, flatten, units_of
from .keys import QueueKeys
from .protocol import Block, Operation, QueueProtocol, Read, Run
from .table import SCRIPTS
from .waits import SharedWaits

logger = logging.getLogger("distqueue.redis")

T = TypeVar("T")

_BLOCK_ERROR_PAUSE = 0.05


def _finish(operation: Operation[T], reply: Any) -> T:
    """The result of a one-step operation, given its step's reply."""
    try:
        operation.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
    raise AssertionError("a take is one step")


def _cancel_swallowed() -> bool:
    """Whether this task was asked to cancel and is still running (``Task.cancelling``; not
    known before Python 3.11)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling is not None and cancelling())


class AsyncRedisBackend:
    """Redis storage for one queue, for asyncio code: the async twin of
    :class:`~.backend.RedisBackend`'s methods, over the same protocol.

    ``client`` (a ``redis.asyncio.Redis`` or ``RedisCluster``) runs commands, ``waits`` the
    blocking waits (``None``: ``client``, with waits short enough for its socket timeout);
    ``owns_client``: whether :meth:`aclose` closes them.
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
        if not asyncio.iscoroutinefunction(getattr(client, "execute_command", None)):
            raise TypeError(
                f"an asyncio queue needs an asyncio client (redis.asyncio.Redis or "
                f"RedisCluster), not {type(client).__name__}"
            )
        self.name = name
        self.kind = kind
        self._client = client
        self._waits = waits if waits is not None else client
        self._owns_client = owns_client
        block_slice = _connection.BLOCK_SLICE if waits is not None else _block_slice(client)
        self.protocol = protocol = QueueProtocol(name, kind, serializer, block_slice)
        self.keys: QueueKeys = protocol.keys
        options = options or RedisOptions()
        # kept connections only on clients of its own: a caller's pool stays the caller's
        self._lane = ConnectionLane(client if owns_client else None)
        traits = ServerTraits()
        self._scripts = {
            script: AsyncScript(
                client,
                spec.file,
                self.keys.of(spec.keys),
                spec.retry_safe,
                options.replica_wait,
                self._lane,
                traits,
            )
            for script, spec in SCRIPTS.items()
        }
        self.retrier = Retrier(options, f"queue {name!r}")
        # a cancellation lost in redis-py's own sends cannot be told before Python 3.11
        self._shield_takes = sys.version_info < (3, 11) and not self._lane.usable
        self._consumers = Consumers(self)
        self._shared_waits = SharedWaits(self)
        self._background: set[asyncio.Task[Any]] = set()

    # -- performing steps ------------------------------------------------------------------

    async def drive(self, operation: Operation[T]) -> T:
        """Perform ``operation``'s steps in turn; its result."""
        try:
            step = next(operation)
            while True:
                step = operation.send(await self.perform(step))
        except StopIteration as done:
            result: T = done.value
            return result

    async def perform(self, step: Run | Read | Block) -> Any:
        if type(step) is Run:
            return await self._run(step)
        if type(step) is Block:
            return await self._shared_waits.wait(step.keys, step.seconds)
        assert type(step) is Read
        return await self._read(step)

    async def _run(self, step: Run) -> Any:
        script = self._scripts[step.script]
        budget: RetryBudget | None = None
        while True:
            started = time.monotonic()
            try:
                return await script(step.args)
            except RETRYABLE as exc:
                if budget is None:
                    budget = RetryBudget(self.retrier, step.what, step.changes, step.wait_until)
                pause = self._decide(budget, exc, started)
            except _REDIS_ERRORS as exc:
                raise await self._translated(exc) from exc
            await asyncio.sleep(pause)

    def _decide(self, budget: RetryBudget, exc: BaseException, started: float) -> float:
        try:
            return budget.failed(exc, started)
        except _REDIS_ERRORS as refused:  # wrong credentials: never retried
            raise translate(refused, self.name, self.kind) from refused

    async def _read(self, step: Read) -> Any:
        budget: RetryBudget | None = None
        while True:
            started = time.monotonic()
            try:
                if len(step.commands) == 1:
                    return await self._client.execute_command(*step.commands[0])
                pipe = self._client.pipeline(transaction=False)
                for command in step.commands:
                    pipe.execute_command(*command)
                return await pipe.execute()
            except RETRYABLE as exc:
                if budget is None:
                    budget = RetryBudget(self.retrier, step.what, False, 0.0)
                pause = self._decide(budget, exc, started)
            except _REDIS_ERRORS as exc:
                raise await self._translated(exc) from exc
            await asyncio.sleep(pause)

    async def block(self, keys: tuple[str, ...], seconds: float) -> bytes | None:
        """BLPOP on ``keys`` for ``seconds``: the key whose token was taken, or ``None`` (also
        when the wait failed: see :mod:`.protocol`)."""
        try:
            woke = await self._waits.blpop(list(keys), seconds)
        except RETRYABLE:
            await asyncio.sleep(min(_BLOCK_ERROR_PAUSE, seconds))
            return None
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("UNBLOCKED"):
                return None  # the server stopped being the master: see backend.py
            raise await self._translated(exc) from exc
        except _REDIS_ERRORS as exc:
            raise await self._translated(exc) from exc
        return None if woke is None else bytes(woke[0])

    async def _translated(self, exc: BaseException) -> Exception:
        error = translate(exc, self.name, self.kind)
        if isinstance(error, WrongTypeError):
            with contextlib.suppress(*_REDIS_ERRORS):
                for key in self.keys.types:
                    actual = await self._client.type(key)
                    found = wrong_type(self.keys.types, f"queue {self.name!r}", key, actual)
                    if found is not None:
                        return found
        return error

    # -- taking, and giving back what nobody got -------------------------------------------

    async def take_once(
        self, n: int, lease_ms: int, max_deliveries: int, wait_until: float | None
    ) -> Any:
        """One take (no wait on the server); if this task is cancelled meanwhile, the call is
        completed in the background and what it took is handed on or given back."""
        operation = self.protocol.take_once(n, lease_ms, max_deliveries, wait_until)
        step = next(operation)
        assert type(step) is Run
        if self._shield_takes:
            return await self._take_shielded(operation, step, lease_ms, max_deliveries)
        try:
            reply = await self._run(step)
        except asyncio.CancelledError:
            self.spawn(self.settle(operation, step, lease_ms, max_deliveries))
            raise
        result = _finish(operation, reply)
        if _cancel_swallowed():
            # This task was cancelled as the reply came, and the cancellation got lost on the
            # way (asyncio.wait_for of Python 3.11, which redis-py uses to send, returns a
            # result that is ready rather than raise): raise it, handing on what was taken.
            self.hand_back(lease_ms, max_deliveries, result)
            raise asyncio.CancelledError
        return result

    async def _take_shielded(
        self, operation: Operation[Any], step: Run, lease_ms: int, max_deliveries: int
    ) -> Any:
        """:meth:`take_once` where a cancellation could be lost inside redis-py (its sends
        go through ``asyncio.wait_for``, which before Python 3.11 may return a result instead
        of raising, and such a task has no ``cancelling()`` to tell): the take runs in a task
        of its own, so this one ends as soon as it is cancelled, and what the take brings is
        handed on."""
        inner = asyncio.get_running_loop().create_task(self._run(step))
        try:
            reply = await asyncio.shield(inner)
        except asyncio.CancelledError:
            self.spawn(self._hand_on_take(inner, operation, step, lease_ms, max_deliveries))
            raise
        return _finish(operation, reply)

    async def _hand_on_take(
        self,
        inner: asyncio.Task[Any],
        operation: Operation[Any],
        step: Run,
        lease_ms: int,
        max_deliveries: int,
    ) -> None:
        """Hand on what a take of a cancelled task took, once it is done (sent again under
        its request id if it failed)."""
        try:
            reply = await inner
        except Exception:
            await self.settle(operation, step, lease_ms, max_deliveries)
            return
        result = _finish(operation, reply)
        self.hand_back(lease_ms, max_deliveries, result)

    async def settle(
        self, operation: Operation[Any], step: Run, lease_ms: int, max_deliveries: int
    ) -> None:
        """Send a take whose task was cancelled (or whose reply was lost) again, under its
        request id, and hand on what it took."""
        try:
            result = _finish(operation, await self._run(step._replace(wait_until=0.0)))
        except Exception as exc:
            logger.error(
                "queue %r: a cancelled get could not learn what its take did (%s); items it "
                "may have taken are lost%s",
                self.name,
                exc,
                ", or delivered again once their lease runs out" if lease_ms else "",
            )
            return
        self.hand_back(lease_ms, max_deliveries, result)

    def hand_back(self, lease_ms: int, max_deliveries: int, result: Any) -> None:
        """Items taken for a task that is gone (``result``, a take's: nothing unless a list
        of them): to the next task in line, else back to the front of the queue."""
        if not isinstance(result, list) or not result:
            return
        rest = self._consumers.offer(lease_ms, max_deliveries, units_of(result, lease_ms))
        if rest:
            self.spawn(self.give_back(lease_ms, flatten(rest, lease_ms)))

    async def give_back(self, lease_ms: int, result: list[Any]) -> None:
        values = result[0::3] if lease_ms else result
        try:
            await self.drive(self.protocol.give_back(bool(lease_ms), values))
        except Exception as exc:
            logger.error(
                "queue %r: %d item(s) taken for a cancelled get could not be given back: %s%s",
                self.name,
                len(values),
                exc,
                "; they are delivered again once their lease runs out" if lease_ms else "",
            )

    def spawn(self, coroutine: Any) -> None:
        """Run ``coroutine`` in a task that :meth:`aclose` waits for."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def waiting_tasks(self) -> int:
        """How many tasks of this process wait in line for items of this queue object (those
        that found the queue empty and wait through the shared wait). For tests."""
        return self._consumers.waiting

    @property
    def blocked_tasks(self) -> int:
        """How many tasks of this process wait in :class:`.waits.SharedWaits` (puts waiting for
        room, joins). For tests."""
        return self._shared_waits.waiting

    # -- the backend protocol, awaited -----------------------------------------------------

    async def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        await self.drive(self.protocol.put(item, maxsize, timeout))

    async def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        await self.drive(self.protocol.put_many(items, maxsize, timeout))

    async def put_with(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, options: PutOptions
    ) -> bool:
        return await self.drive(self.protocol.put_with(items, maxsize, timeout, options))

    async def scheduled(self) -> int:
        return await self.drive(self.protocol.scheduled())

    async def set_limits(self, limits: Limits) -> None:
        await self.drive(self.protocol.set_limits(limits))

    async def limits(self) -> Limits:
        return await self.drive(self.protocol.limits())

    async def pause(self, seconds: float) -> None:
        await self.drive(self.protocol.pause(seconds))

    async def get_many(self, n: int, timeout: float | None) -> list[Any]:
        raws = await self._consumers.take(n, timeout, 0, 0)
        return await self.drive(self.protocol.decode_items(raws))

    async def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> list[Lease]:
        from .protocol import lease_length_ms

        result = await self._consumers.take(
            n, timeout, lease_length_ms(lease_seconds), max_deliveries
        )
        return await self.drive(self.protocol.decode_leases(result))

    async def qsize(self) -> int:
        return await self.drive(self.protocol.qsize())

    async def task_done(self) -> None:
        await self.drive(self.protocol.task_done())

    async def join(self, timeout: float | None) -> bool:
        return await self.drive(self.protocol.join(timeout))

    async def unfinished_tasks(self) -> int:
        return await self.drive(self.protocol.unfinished_tasks())

    async def shutdown(self, immediate: bool) -> None:
        await self.drive(self.protocol.shutdown(immediate))

    async def is_shutdown(self) -> bool:
        return await self.drive(self.protocol.is_shutdown())

    async def delete(self) -> None:
        await self.drive(self.protocol.delete())

    async def ack(self, ids: Sequence[str]) -> int:
        return await self.drive(self.protocol.ack(ids))

    async def nack(self, ids: Sequence[str], delay: float) -> int:
        return await self.drive(self.protocol.nack(ids, delay))

    async def bury(self, ids: Sequence[str], error: str) -> int:
        return await self.drive(self.protocol.bury(ids, error))

    async def extend(self, ids: Sequence[str], lease_seconds: float) -> int:
        return await self.drive(self.protocol.extend(ids, lease_seconds))

    async def in_flight(self) -> int:
        return await self.drive(self.protocol.in_flight())

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        return await self.drive(self.protocol.dead_letters(limit))

    async def requeue_dead(self, limit: int) -> int:
        return await self.drive(self.protocol.requeue_dead(limit))

    async def purge_dead(self, limit: int) -> int:
        return await self.drive(self.protocol.purge_dead(limit))

    async def aclose(self) -> None:
        """Stop the shared wait, finish giving back what cancelled gets took, and close the
        clients if they are this object's."""
        await self._consumers.aclose()
        await self._shared_waits.aclose()
        while self._background:
            # (a finished task leaves the set by a callback that may not have run yet, and
            # gathering finished tasks does not yield to the loop: drop them here)
            running = list(self._background)
            await asyncio.gather(*running, return_exceptions=True)
            self._background.difference_update(running)
        await self._lane.aclose()
        if self._owns_client:
            await self._client.aclose()
            if self._waits is not self._client:
                await self._waits.aclose()
