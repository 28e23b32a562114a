"""Lua scripts run through redis-py's asyncio clients: :class:`AsyncScript`, the asyncio twin
of :class:`~..scripts.Script`, with the same text, hash, keys and replica waits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.exceptions

from ..scripts import (
    Head,
    LoadLibrary,
    NotSent,
    ReplicasBehind,
    ScriptPlan,
    ServerTraits,
    _resp,
    advance,
    check_replicas,
    function_library,
)


class AsyncScript:
    """One Lua script with its keys bound, run through a redis-py asyncio client as
    :class:`~..scripts.ScriptPlan` says (its function by FCALL, or EVALSHA, or EVAL), followed
    on the same connection by Redis's ``WAIT`` when ``replica_wait`` asks replicas to confirm
    each change (as :class:`~..scripts.Script` does; ``ReplicasBehind`` when too few did, which
    the caller retries).

    With a plain ``redis.asyncio.Redis`` speaking RESP2 the command is packed here and written
    straight to a connection (a ``lane``'s kept one, else a pooled one), which also tells a
    failure before sending (:class:`NotSent`: surely not run) from one after. Other clients (a
    Cluster, which routes by the keys) go through ``execute_command``. ``traits``: what the
    client's servers lack, shared by the scripts of one client.
    """

    __slots__ = ("_client", "_fast", "_lane", "_plan", "_wait", "_wait_packed")

    def __init__(
        self,
        client: Any,
        file: str,
        keys: Sequence[str],
        retry_safe: bool,
        replica_wait: tuple[int, int] = (0, 0),
        lane: ConnectionLane | None = None,
        traits: ServerTraits | None = None,
    ) -> None:
        self._client = client
        self._lane = lane if lane is not None and lane.usable else None
        self._plan = ScriptPlan(file, keys, retry_safe, traits)
        self._fast = type(client) is redis.asyncio.Redis and _plain_resp2(client)
        self._wait = replica_wait if retry_safe and replica_wait[0] > 0 else None
        self._wait_packed = (
            b"".join([b"*3\r\n", _resp("WAIT"), *map(_resp, replica_wait)]) if self._wait else b""
        )
        if self._wait and not hasattr(client, "pipeline"):
            raise ValueError("wait_replicas needs a client with pipelines")

    async def __call__(self, args: tuple[Any, ...]) -> Any:
        plan = self._plan
        head = plan.head
        try:
            return await self._send(head, args)
        except redis.exceptions.ResponseError as exc:
            steps = plan.after_refusal(head, exc)
        step: Any = next(steps)
        while True:
            try:
                if isinstance(step, LoadLibrary):
                    outcome = await self._load_library()
                else:
                    outcome = await self._send(step, args)
            except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
                outcome = exc
            finished, step = advance(steps, outcome)
            if finished:
                return step

    async def _load_library(self) -> Any:
        """Load :func:`~..scripts.function_library` through the client, to the server of the
        keys."""
        command = ("FUNCTION", "LOAD", function_library()[0])
        keys = self._plan.keys
        if isinstance(self._client, redis.asyncio.RedisCluster) and keys:
            # to the master of the keys only (the client would send it to every master)
            node = self._client.get_node_from_key(keys[0])
            return await self._client.execute_command(*command, target_nodes=node)
        return await self._client.execute_command(*command)

    def _check_replicas(self, acked: Any) -> None:
        assert self._wait is not None
        check_replicas(acked, self._wait)

    async def _send(self, head: Head, args: tuple[Any, ...]) -> Any:
        if not self._fast:
            return await self._generic(*head, *args)
        command = self._plan.command(head, args)
        if self._lane is not None:
            return await self._lane.exchange(command, self._wait_packed, self._check_replicas)
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
            return await _replies_with_wait(_read_response, conn, self._check_replicas)
        finally:
            await pool.release(conn)

    async def _generic(self, *command: Any) -> Any:
        """``command`` through the client's own routing (and the replicas' WAIT). On a
        Cluster, to the master of the keys' slot as the client knows it (told, not left to
        the client, which would ask a server for the keys of every FCALL first)."""
        target: dict[str, Any] = {}
        keys = self._plan.keys
        if isinstance(self._client, redis.asyncio.RedisCluster) and keys:
            await self._client.initialize()  # (the slots are read at first use)
            target["target_nodes"] = self._client.get_node_from_key(keys[0])
        if self._wait is None:
            return await self._client.execute_command(*command, **target)
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command(*command, **target)
        # a Cluster's pipeline sends the commands of one node in order on one connection: the
        # WAIT follows the change there
        pipe.execute_command("WAIT", *self._wait, **target)
        reply, acked = await pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acked, Exception):
            raise acked
        self._check_replicas(acked)
        return reply


async def _read_response(conn: Any) -> Any:
    return await conn.read_response()


async def _replies_with_wait(
    read: Callable[[Any], Awaitable[Any]], conn: Any, check_replicas: Callable[[Any], None]
) -> Any:
    """The reply of a command sent with a WAIT after it, both read with ``read`` from
    ``conn``, once ``check_replicas`` accepted the WAIT's."""
    try:
        reply = await read(conn)
    except redis.exceptions.ResponseError:
        await read(conn)  # the WAIT's reply: keep the connection in step
        raise
    check_replicas(await read(conn))
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


if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - redis-py depends on async-timeout before 3.11
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,unused-ignore]


_CLOCK_SLACK = 0.001
"""Seconds early a read may be ended (a timer can fire a little before its time)."""


class ConnectionLane:
    """Connections that one queue object takes from a plain ``redis.asyncio.Redis``'s pool
    and keeps for its script calls, one call at a time on each.

    A script call is the hot path of every put and get, and the pool's own hand-over (a lock,
    a check for unread data, events and metrics) costs about as much as the rest of the
    client's work. A kept connection needs none of it: a call reads its replies to the end or
    the connection is closed, so a kept connection never holds unread data; one the server
    closed is opened again before anything is written to it. The client's ``socket_timeout``
    bounds every read (and a write the kernel cannot take at once).

    ``usable`` is false when the client is not one this works for (another pool class,
    health checks, connections without redis-py's stream reader and writer); its scripts then
    use the pool as any command does. :meth:`aclose` hands the connections back to the pool.
    """

    def __init__(self, client: Any) -> None:
        pool: Any = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {})
        self._pool = pool
        self._idle: list[Any] = []
        self._expired: set[Any] = set()  # connections whose read ran out of time
        self._timeout: float | None = kwargs.get("socket_timeout")
        # the reads under way: connection -> when its reply must have come (loop time); one
        # timer watches them all (a timer made and cancelled per read costs 2.6 µs a call)
        self._reading: dict[Any, float] = {}
        self._watch: asyncio.TimerHandle | None = None
        self._watch_loop: asyncio.AbstractEventLoop | None = None
        self.usable = (
            type(client) is redis.asyncio.Redis
            and type(pool) is redis.asyncio.ConnectionPool
            and _plain_resp2(client)
            and not kwargs.get("health_check_interval")
            and all(
                hasattr(pool.connection_class, name)
                for name in ("is_connected", "connect", "disconnect")
            )
        )

    async def _connection(self) -> Any:
        """An idle kept connection, else a new one from the pool; connected, with nothing
        unread. ``NotSent`` if it cannot be connected."""
        try:
            conn = self._idle.pop()
        except IndexError:
            try:
                conn = await self._pool.get_connection()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                raise NotSent(exc) from exc
            return conn
        writer = getattr(conn, "_writer", None)
        if writer is None or writer.transport.is_closing():
            # closed by the server (a restart, a client kill, its timeout) since the last call
            await conn.disconnect(nowait=True)
            try:
                await conn.connect()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                self._idle.append(conn)
                raise NotSent(exc) from exc
        return conn

    async def exchange(self, command: bytes, wait: bytes, check_replicas: Any) -> Any:
        """Send ``command`` (and ``wait``, a packed WAIT, unless empty) on a kept connection;
        the command's reply, once ``check_replicas`` accepted the WAIT's. ``NotSent`` when the
        command surely did not reach the server."""
        conn = await self._connection()
        try:
            writer = conn._writer
            try:
                writer.write(command + wait if wait else command)
                if writer.transport.get_write_buffer_size():
                    async with _timeout(self._timeout):
                        await writer.drain()
            except (OSError, asyncio.TimeoutError) as exc:
                # A command cut short is never run: the server drops it with the connection.
                await conn.disconnect(nowait=True)
                raise NotSent(redis.exceptions.ConnectionError(f"writing failed: {exc!r}")) from exc
            if not wait:
                return await self._read(conn)
            return await _replies_with_wait(self._read, conn, check_replicas)
        except (redis.exceptions.ResponseError, ReplicasBehind):
            raise  # every reply was read: the connection is in step
        except BaseException:
            # anything else (cancellation included) may leave a reply unread
            await conn.disconnect(nowait=True)
            raise
        finally:
            self._idle.append(conn)

    async def _read(self, conn: Any) -> Any:
        """The next reply on ``conn``. A read that outlasts ``socket_timeout`` is ended by
        closing the connection under it (see :meth:`_watch_reads`), and raises
        ``TimeoutError``."""
        self._expired.discard(conn)  # (closed as an earlier reply came)
        if self._timeout is not None:
            loop = asyncio.get_running_loop()
            self._reading[conn] = loop.time() + self._timeout
            if self._watch is None or self._watch_loop is not loop:
                # (a watch set on another event loop, which may never run again, is no watch)
                self._watch_loop = loop
                self._watch = loop.call_at(self._reading[conn], self._watch_reads, loop)
        try:
            reply = await conn._parser.read_response(disable_decoding=False)
        except (redis.exceptions.ConnectionError, OSError) as exc:
            if conn in self._expired:
                self._expired.discard(conn)
                raise redis.exceptions.TimeoutError("no reply within socket_timeout") from exc
            if isinstance(exc, OSError):
                raise redis.exceptions.ConnectionError(f"reading failed: {exc!r}") from exc
            raise
        finally:
            self._reading.pop(conn, None)
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
        return reply

    def _watch_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections whose reads ran out of time, which ends those reads; then
        watch on until the earliest of the other reads is due. (A read begun later than the
        others is due later, so the watch set for the earliest comes first.)"""
        if loop is not self._watch_loop:
            return  # a watch of an earlier event loop: the current one has its own
        self._watch = None
        now = loop.time() + _CLOCK_SLACK
        due = [conn for conn, deadline in self._reading.items() if deadline <= now]
        for conn in due:
            del self._reading[conn]
            self._expired.add(conn)
            writer = getattr(conn, "_writer", None)
            if writer is not None:
                writer.transport.abort()
        if self._reading:
            self._watch = loop.call_at(min(self._reading.values()), self._watch_reads, loop)

    async def aclose(self) -> None:
        """Hand the idle kept connections back to the pool. (One that a call still uses is
        not: the pool would hand it to another caller while that call reads its reply.)"""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)
