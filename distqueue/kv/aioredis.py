"""The Redis cache backend for asyncio code: the steps of :mod:`.redisprotocol`, awaited on
redis-py's asyncio clients (one server, a Cluster, a Sentinel's master), with no thread.

Everything but the I/O is the blocking backend's (:mod:`.redis`): the commands, request ids
and reply keys of the ``kv_*.lua`` scripts, grouping by Cluster slot, what each reply and each
failure means, and when a failed call is retried; so is the server's health
(``dead_retry``). Pauses between retries are ``asyncio.sleep``. The methods are those of
:class:`~.base.KVBackend` that the cache calls, as coroutines: not ``publish``,
``publish_many`` and ``wait_item``, which only the (blocking) results store needs.

Cancellation: a call cancelled while it waits for its reply closes its connection (redis-py
does; a reply that comes later is never read as another call's), so the client stays usable.
A script call cancelled after it was sent may have run, once: what the caller would have
learnt is lost with the cancellation, as with any awaited write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..backends.connection import RedisOptions, Retrier
from ..backends.redis.aioscripts import AsyncScript
from ..backends.scripts import ServerTraits
from .base import Failure, KeepTTL, ServerHealth
from .redisprotocol import ITEM_SIZE_LIMIT, Commands, Operation, RedisKVProtocol, RunScript, Step
from .steps import arun

T = TypeVar("T")


class AsyncRedisBackend:
    """Items on Redis for asyncio code; see the module docstring. ``client``: a
    ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``, which :meth:`aclose`
    closes."""

    shared = True
    keeps_ttl = True

    def __init__(self, client: Any, *, name: str, dead_retry: float, options: RedisOptions) -> None:
        import redis.asyncio.cluster

        self._client = client
        self._traits = ServerTraits()  # shared by its script calls
        self.health = ServerHealth(name, dead_retry)
        self.protocol = RedisKVProtocol(
            self.health,
            Retrier(options, name),
            cluster=isinstance(client, redis.asyncio.cluster.RedisCluster),
        )

    # -- performing steps ----------------------------------------------------------------------

    async def _drive(self, operation: Operation[T]) -> T:
        return await arun(operation, self._perform)

    async def _perform(self, step: Step) -> Any:
        """One step, retried as its :class:`~.redisprotocol.Attempt` decides."""
        attempt = self.protocol.attempt(step)
        while True:
            started = time.monotonic()
            try:
                reply = await self._send(step)
            except Exception as exc:
                await asyncio.sleep(attempt.failed(exc, started))
                continue
            attempt.succeeded()
            return reply

    async def _send(self, step: Step) -> Any:
        if type(step) is RunScript:
            return await AsyncScript(
                self._client, step.file, [step.key], True, traits=self._traits
            )(step.args)
        assert type(step) is Commands
        if len(step.commands) == 1 and not step.transaction:
            return await self._client.execute_command(*step.commands[0])
        pipe = self._client.pipeline(transaction=step.transaction)
        for command in step.commands:
            pipe.execute_command(*command)
        return await pipe.execute()

    # -- the contract, awaited -----------------------------------------------------------------

    async def item_size_limit(self) -> int | None:
        return ITEM_SIZE_LIMIT

    async def memory_limit(self) -> int | None:
        return None

    async def get(self, key: bytes) -> bytes | None:
        return await self._drive(self.protocol.get(key))

    async def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        return await self._drive(self.protocol.get_many(keys))

    async def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        await self._drive(self.protocol.set(key, item, ttl))

    async def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        return await self._drive(self.protocol.set_many(items, ttl))

    async def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        return await self._drive(self.protocol.add(key, item, ttl))

    async def replace(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        return await self._drive(self.protocol.replace(key, item, ttl))

    async def gets(self, key: bytes) -> tuple[bytes | None, object | None]:
        return await self._drive(self.protocol.gets(key))

    async def cas(
        self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object
    ) -> bool:
        return await self._drive(self.protocol.cas(key, item, ttl, stamp))

    async def append(self, key: bytes, data: bytes, prepend: bool) -> bool | None:
        return await self._drive(self.protocol.append(key, data, prepend))

    async def delete(self, key: bytes) -> bool:
        return await self._drive(self.protocol.delete(key))

    async def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        return await self._drive(self.protocol.delete_many(keys))

    async def touch(self, key: bytes, ttl: float | None) -> bool:
        return await self._drive(self.protocol.touch(key, ttl))

    async def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return await self._drive(self.protocol.incr(key, delta, ttl))

    async def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return await self._drive(self.protocol.decr(key, delta, ttl))

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()
