"""The asyncio driver of :class:`~.protocol.QueueProtocol`: the same steps as
:class:`~.backend.RedisBackend`, performed with redis-py's asyncio clients.

Nothing about the queue's behaviour is decided here: scripts, arguments, request ids, what a
reply means and when to give up all come from the protocol, so a queue reached from blocking
and from asyncio code is one queue (same keys, scripts and payloads). This module adds only
what asyncio needs:

* **I/O**: scripts by EVALSHA (sent whole by EVAL when the server does not know them), reads
  as commands, waits as BLPOP on a client of their own. Connection failures are retried as a
  whole under the same request id, following :class:`~..connection.RetryBudget` (which
  decides; this module only sleeps), and errors are translated by
  :func:`~.backend.translate`.
* **Shared waiting** (:class:`_Consumers`): however many tasks of one process wait in
  ``get()`` on one queue object, one task waits on the server for them, on one connection. The
  waiting tasks stand in line; each take asks for as many items as the tasks at the head of the
  line want, in one round trip, and hands them out in line order, as ``asyncio.Queue`` wakes
  its getters.
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
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.exceptions

from ...errors import BackendError, Empty, ShutDown, WrongTypeError
from ...serializers import Serializer
from .. import connection as _connection
from ..base import DeadLetter, Deadline, Kind, Lease
from ..connection import RETRYABLE, RedisOptions, Retrier, RetryBudget
from ..scripts import (
    NotSent,
    ReplicasBehind,
    _pack_command,
    _resp,
    script_source,
    sha_of,
    source_without_shebang,
)
from .backend import _REDIS_ERRORS, _block_slice, translate
from .keys import QueueKeys
from .protocol import SHUT_DOWN, Block, Operation, QueueProtocol, Read, Run
from .table import SCRIPTS

logger = logging.getLogger("distqueue.redis")

T = TypeVar("T")

_BLOCK_ERROR_PAUSE = 0.05
_MOST = 2**31 - 1


class _AsyncScript:
    """One Lua script of one queue, run by EVALSHA (EVAL when the server does not know it),
    followed on the same connection by Redis's ``WAIT`` when ``replica_wait`` asks replicas to
    confirm each change (as :class:`~..scripts.Script` does; ``ReplicasBehind`` when too few
    did, which the caller retries).

    With a plain ``redis.asyncio.Redis`` speaking RESP2 the command is packed here and written
    straight to a pooled connection, which also tells a failure before sending
    (:class:`NotSent`: surely not run) from one after. Other clients (a Cluster, which routes
    EVALSHA by its keys) go through ``execute_command``.
    """

    __slots__ = (
        "_client",
        "_fast",
        "_keycount",
        "_keys",
        "_packed",
        "_prefix",
        "_wait",
        "_wait_packed",
        "source",
    )

    def __init__(
        self,
        client: Any,
        file: str,
        keys: Sequence[str],
        retry_safe: bool,
        replica_wait: tuple[int, int] = (0, 0),
    ) -> None:
        self._client = client
        self._keys = tuple(keys)
        # a retry-safe call gives two more keys: a reply received (to delete), and its own
        self._keycount = len(self._keys) + (2 if retry_safe else 0)
        self._fast = type(client) is redis.asyncio.Redis and _plain_resp2(client)
        self._wait = replica_wait if retry_safe and replica_wait[0] > 0 else None
        self._wait_packed = (
            b"".join([b"*3\r\n", _resp("WAIT"), *map(_resp, replica_wait)]) if self._wait else b""
        )
        if self._wait and not hasattr(client, "pipeline"):
            raise ValueError("wait_replicas needs a client with pipelines")
        self._use(script_source(file, retry_safe))

    def _use(self, source: str) -> None:
        self.source = source
        self._prefix: tuple[Any, ...] = ("EVALSHA", sha_of(source), self._keycount, *self._keys)
        self._packed = b"".join(_resp(part) for part in self._prefix)

    async def __call__(self, args: tuple[Any, ...]) -> Any:
        try:
            return await self._send(self._prefix, args)
        except redis.exceptions.NoScriptError:
            pass
        except redis.exceptions.ResponseError as exc:
            if not self._drop_shebang(exc):
                raise
        # NOSCRIPT: nothing ran; EVAL runs it and leaves it known to that server.
        try:
            return await self._send(("EVAL", self.source, *self._prefix[2:]), args)
        except redis.exceptions.ResponseError as exc:
            if not self._drop_shebang(exc):
                raise
        return await self._send(("EVAL", self.source, *self._prefix[2:]), args)

    def _drop_shebang(self, exc: BaseException) -> bool:
        source = source_without_shebang(self.source, exc)
        if source is None:
            return False
        self._use(source)
        return True

    def _check_replicas(self, acked: Any) -> None:
        assert self._wait is not None
        wanted, ms = self._wait
        if int(acked) < wanted:
            raise ReplicasBehind(
                f"{acked} of the {wanted} replica(s) asked for confirmed a change within {ms} ms"
            )

    async def _send(self, head: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        if not self._fast:
            return await self._generic(*head, *args)
        if _pack_command is not None:
            command = _pack_command((*head, *args))
        else:
            packed = self._packed if head is self._prefix else b"".join(map(_resp, head))
            command = b"".join([b"*%d\r\n" % (len(head) + len(args)), packed, *map(_resp, args)])
        pool = self._client.connection_pool
        try:
            conn = await pool.get_connection()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise NotSent(exc) from exc
        try:
            try:
                if self._wait is None:
                    await conn.send_packed_command(command)
                else:
                    await conn.send_packed_command([command, self._wait_packed])
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # A command cut short is never run: the server drops it with the connection.
                await conn.disconnect()
                raise NotSent(exc) from exc
            # read_response disconnects by itself on any failure (cancellation included)
            if self._wait is None:
                return await conn.read_response()
            try:
                reply = await conn.read_response()
            except redis.exceptions.ResponseError:
                await conn.read_response()  # the WAIT's reply: keep the connection in step
                raise
            self._check_replicas(await conn.read_response())
            return reply
        finally:
            await pool.release(conn)

    async def _generic(self, *command: Any) -> Any:
        """``command`` through the client's own routing (and the replicas' WAIT)."""
        if self._wait is None:
            return await self._client.execute_command(*command)
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", *self._wait)
        reply, acked = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acked, Exception):
            raise acked
        self._check_replicas(acked)
        return reply


def _plain_resp2(client: Any) -> bool:
    """Whether the client's connections are redis-py's own asyncio ones, in plain RESP2."""
    import redis.asyncio.connection
    import redis.asyncio.sentinel

    pool = client.connection_pool
    return (
        pool.connection_class
        in (
            redis.asyncio.connection.Connection,
            redis.asyncio.connection.SSLConnection,
            redis.asyncio.connection.UnixDomainSocketConnection,
            redis.asyncio.sentinel.SentinelManagedConnection,
            redis.asyncio.sentinel.SentinelManagedSSLConnection,
        )
        and pool.connection_kwargs.get("protocol") in (None, 2, "2")
        and not pool.connection_kwargs.get("cache")
        and getattr(client, "single_connection_client", False) is False
    )


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


class _Consumers:
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
            waiter.future.set_result(_flat(share, lease_ms))
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
                    units = _units(result, first.lease_ms)
                    rest = self.offer(first.lease_ms, first.max_deliveries, units)
                    if rest:  # the tasks left meanwhile: back, in a task no close cancels
                        backend.spawn(
                            backend.give_back(first.lease_ms, _flat(rest, first.lease_ms))
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
                if protocol.shutdown_woke(woke):
                    await backend.drive(protocol.hand_on())
                elif not self._head():
                    # The token was for the tasks that left meanwhile: pass it on, so that
                    # another consumer of the queue is not left asleep.
                    await backend.drive(protocol.give_back(False, ()))
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


def _finish(operation: Operation[T], reply: Any) -> T:
    """The result of a one-step operation, given its step's reply."""
    try:
        operation.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
    raise AssertionError("a take is one step")


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(Empty())


def _units(result: list[Any], lease_ms: int) -> list[Any]:
    if not lease_ms:
        return result
    return [tuple(result[i : i + 3]) for i in range(0, len(result), 3)]


def _flat(units: list[Any], lease_ms: int) -> list[Any]:
    if not lease_ms:
        return units
    return [part for unit in units for part in unit]


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
        self.name = name
        self.kind = kind
        self._client = client
        self._waits = waits if waits is not None else client
        self._owns_client = owns_client
        block_slice = _connection.BLOCK_SLICE if waits is not None else _block_slice(client)
        self.protocol = protocol = QueueProtocol(name, kind, serializer, block_slice)
        self.keys: QueueKeys = protocol.keys
        options = options or RedisOptions()
        if options.wait_replicas and type(client).__name__ == "RedisCluster":
            raise ValueError(
                "wait_replicas is not available for asyncio queues on a Redis Cluster (the "
                "client routes WAIT to another connection than the change); use it with one "
                "server or Sentinel"
            )
        self._scripts = {
            script: _AsyncScript(
                client, spec.file, self.keys.of(spec.keys), spec.retry_safe, options.replica_wait
            )
            for script, spec in SCRIPTS.items()
        }
        self.retrier = Retrier(options, f"queue {name!r}")
        self._consumers = _Consumers(self)
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
            return await self.block(step.keys, step.seconds)
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
                for key, expected in self.keys.types.items():
                    actual = await self._client.type(key)
                    found = actual.decode() if isinstance(actual, bytes) else str(actual)
                    if found not in ("none", expected):
                        return WrongTypeError(
                            f"key {key!r} of queue {self.name!r} holds a {found}, "
                            f"where distqueue keeps a {expected}",
                            key=key,
                        )
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
        try:
            reply = await self._run(step)
        except asyncio.CancelledError:
            self.spawn(self.settle(operation, step, lease_ms, max_deliveries))
            raise
        return _finish(operation, reply)

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
        if isinstance(result, list) and result:
            self.hand_back(lease_ms, max_deliveries, result)

    def hand_back(self, lease_ms: int, max_deliveries: int, result: list[Any]) -> None:
        """Items taken for a task that is gone: to the next task in line, else back to the
        front of the queue."""
        rest = self._consumers.offer(lease_ms, max_deliveries, _units(result, lease_ms))
        if rest:
            self.spawn(self.give_back(lease_ms, _flat(rest, lease_ms)))

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

    # -- the backend protocol, awaited -----------------------------------------------------

    async def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        await self.drive(self.protocol.put(item, maxsize, timeout))

    async def put_many(self, items: Sequence[Any], maxsize: int, timeout: float | None) -> None:
        await self.drive(self.protocol.put_many(items, maxsize, timeout))

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
        while self._background:
            # (a finished task leaves the set by a callback that may not have run yet, and
            # gathering finished tasks does not yield to the loop: drop them here)
            running = list(self._background)
            await asyncio.gather(*running, return_exceptions=True)
            self._background.difference_update(running)
        if self._owns_client:
            await self._client.aclose()
            if self._waits is not self._client:
                await self._waits.aclose()
