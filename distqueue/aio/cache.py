"""``Cache`` and ``@cached`` for asyncio code: :class:`distqueue.Cache`'s behaviour, awaited.

::

    cache = distqueue.aio.Cache("redis://localhost:6379/0", namespace="app")
    await cache.set("user:42", {"name": "Ada"}, ttl=60)
    await cache.get("user:42")

    @cache.cached(ttl=300)
    async def report(day: datetime.date) -> dict: ...

Everything but the waiting is :class:`distqueue.Cache`'s own code: keys, value framing and
chunking, counters, statistics, the rule that a failed server is a miss. Each call runs that
code in a bounded pool of threads (``max_threads``, 8 by default) and awaits it, so the event
loop never blocks on a server; a call holds a thread for at most the sync call's own bound
(``connect_timeout + timeout`` per server). memcached has no asyncio client with the time
limits, server hashing and error handling pymemcache gives (the sync cache's client), so it
goes through the same pool as Redis.

A cached ``async def`` function runs once for many callers missing one key at once: the tasks
of one process that miss it while a call is under way wait for that call, then read its
value; callers in other processes (or on other event loops) wait for the cache's lock, as with
:meth:`distqueue.Cache.cached` (see :mod:`distqueue.stampede`). The function itself runs on the
caller's event loop.

Cancelling a call (``asyncio.timeout``, ``wait_for``) stops the wait at once; a call already
handed to a thread finishes there, and its effect (a ``set``, say) takes place or not as if
the caller had not been cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import secrets
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from .. import cache as sync_cache
from .. import stampede
from ..cache import DEFAULT, DEFAULT_LOCK_TTL, TTL, CacheStats, CasToken
from ..errors import BackendError
from ..kv.base import check_seconds

__all__ = ["Cache", "CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_THREADS = 8
"""Threads of one :class:`Cache` that run calls at once; more calls wait for a free thread."""


class Cache:
    """:class:`distqueue.Cache` for asyncio code: the same arguments and behaviour, every call
    awaited (``aclose()`` and ``async with`` too), and :meth:`cached` for ``async def``
    functions.

    ``max_threads``: how many calls run at once (in threads, on the sync cache's clients);
    further calls wait their turn. The arguments, return values and exceptions of each method
    are those of the method of the same name of :class:`distqueue.Cache`; ``sync`` is that
    cache (usable from threads, sharing its connections and :attr:`stats`).
    """

    def __init__(self, url: str, *, max_threads: int = DEFAULT_MAX_THREADS, **options: Any) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ValueError(f"max_threads must be an int >= 1, not {max_threads!r}")
        self.sync = sync_cache.Cache(url, **options)
        self.url = url
        self.namespace = self.sync.namespace
        self.default_ttl = self.sync.default_ttl
        self.max_threads = max_threads
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_threads, thread_name_prefix="distqueue-cache"
        )
        self._closed = False

    def _submit(
        self, call: Callable[..., R], *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
        if self._closed:
            raise RuntimeError("this Cache is closed")
        return self._threads.submit(call, *args, **kwargs)

    async def _run(self, call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``call(*args, **kwargs)`` in the pool, awaited."""
        return await asyncio.wrap_future(self._submit(call, *args, **kwargs))

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters; see :class:`distqueue.cache.CacheStats`."""
        return self.sync.stats

    # -- the calls of distqueue.Cache, awaited --------------------------------------------------

    async def get(self, key: str | bytes, default: Any = None) -> Any:
        """See :meth:`distqueue.Cache.get`."""
        return await self._run(self.sync.get, key, default)

    async def get_many(self, keys: Iterable[str | bytes]) -> dict[str | bytes, Any]:
        """See :meth:`distqueue.Cache.get_many`."""
        return await self._run(self.sync.get_many, list(keys))

    async def set(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.set`."""
        return await self._run(self.sync.set, key, value, ttl)

    async def set_many(
        self,
        values: Mapping[str, Any] | Mapping[bytes, Any] | Mapping[str | bytes, Any],
        ttl: TTL = DEFAULT,
    ) -> list[str | bytes]:
        """See :meth:`distqueue.Cache.set_many`."""
        return await self._run(self.sync.set_many, dict(values), ttl)

    async def add(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.add`."""
        return await self._run(self.sync.add, key, value, ttl)

    async def replace(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.replace`."""
        return await self._run(self.sync.replace, key, value, ttl)

    async def append(self, key: str | bytes, data: bytes) -> bool:
        """See :meth:`distqueue.Cache.append`."""
        return await self._run(self.sync.append, key, data)

    async def prepend(self, key: str | bytes, data: bytes) -> bool:
        """See :meth:`distqueue.Cache.prepend`."""
        return await self._run(self.sync.prepend, key, data)

    async def gets(self, key: str | bytes, default: Any = None) -> tuple[Any, CasToken | None]:
        """See :meth:`distqueue.Cache.gets`."""
        return await self._run(self.sync.gets, key, default)

    async def cas(self, key: str | bytes, value: Any, token: CasToken, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.cas`."""
        return await self._run(self.sync.cas, key, value, token, ttl)

    async def delete(self, key: str | bytes) -> bool:
        """See :meth:`distqueue.Cache.delete`."""
        return await self._run(self.sync.delete, key)

    async def touch(self, key: str | bytes, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.touch`."""
        return await self._run(self.sync.touch, key, ttl)

    async def incr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """See :meth:`distqueue.Cache.incr` (``OutcomeUnknownError`` included)."""
        return await self._run(self.sync.incr, key, delta, ttl=ttl)

    async def decr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """See :meth:`distqueue.Cache.decr`."""
        return await self._run(self.sync.decr, key, delta, ttl=ttl)

    # -- decorating ----------------------------------------------------------------------------

    def cached(
        self,
        ttl: TTL = DEFAULT,
        *,
        key: Callable[..., Any] | None = None,
        name: str | None = None,
        lock_ttl: float = DEFAULT_LOCK_TTL,
    ) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
        """Decorate an ``async def`` function so that its results are cached; the arguments
        and the ``TypeError`` for an ambiguous function are those of
        :meth:`distqueue.Cache.cached`. Decorating a plain function is a ``TypeError``."""
        seconds = self.sync._ttl(ttl)
        lock_seconds = check_seconds(lock_ttl, "lock_ttl")

        def decorate(func: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"{func!r} is not an async def function; use distqueue.Cache.cached for it"
                )
            return CachedFunction(
                self, func, ttl=seconds, key=key, name=name, lock_ttl=lock_seconds
            )

        return decorate

    # -- lifetime ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Wait for the calls under way, then release the connections. Values stay."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._threads.shutdown, True)
        self.sync.close()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<aio.Cache url={self.url!r} namespace={self.namespace!r}>"


class CachedFunction(Generic[P, R]):
    """An ``async def`` function whose results are cached in a :class:`Cache`.

    Await it as the function. ``await invalidate(*args, **kwargs)`` and ``await
    cache_clear()`` are those of :class:`distqueue.cache.CachedFunction`, as are the keys:
    the sync and async cached functions of one name share their results.
    """

    def __init__(
        self,
        cache: Cache,
        func: Callable[P, Awaitable[R]],
        *,
        ttl: float | None,
        key: Callable[..., Any] | None,
        name: str | None,
        lock_ttl: float,
    ) -> None:
        # The keys, the lookups, storing and the lock's release are the sync function's.
        self._sync: sync_cache.CachedFunction[P, Awaitable[R]] = sync_cache.CachedFunction(
            cache.sync,
            func,
            store=cache.sync._store,
            stats=cache.sync._stats,
            ttl=ttl,
            key=key,
            name=name,
            lock_ttl=lock_ttl,
        )
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.__name__: str = self._sync.__name__
        self.cache = cache
        self.name = self._sync.name
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        # Calls under way in this process, by event loop and entry: the tasks that miss the
        # same entry meanwhile wait for the call, then read its value.
        self._under_way: dict[tuple[asyncio.AbstractEventLoop, bytes], asyncio.Future[None]] = {}

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        entry_key = self._sync._entry_key(args, kwargs)
        under_way_key = (asyncio.get_running_loop(), entry_key)
        under_way = self._under_way.get(under_way_key)
        if under_way is not None:
            await asyncio.shield(under_way)
            return await self._call(entry_key, args, kwargs)
        done = asyncio.get_running_loop().create_future()
        self._under_way[under_way_key] = done
        try:
            return await self._call(entry_key, args, kwargs)
        finally:
            del self._under_way[under_way_key]
            done.set_result(None)

    async def _call(self, entry_key: bytes, args: Any, kwargs: Any) -> R:
        """Drive :func:`distqueue.stampede.plan`, each step in the cache's threads."""
        sync = self._sync
        run = self.cache._run
        lock_key = sync._keys.key("l", entry_key)
        token = secrets.token_hex(16).encode("ascii")
        steps = stampede.plan(sync._stats, self.name, self.lock_ttl)
        reply: Any = None
        error: BackendError | None = None
        while True:
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                decision: stampede.Decision = done.value
                break
            reply, error = None, None
            if isinstance(step, stampede.Pause):
                await asyncio.sleep(step.seconds)
                continue
            performed = self.cache._submit(sync._perform, step, entry_key, lock_key, token)
            try:
                reply = await asyncio.wrap_future(performed)
            except BackendError as exc:
                error = exc
            except asyncio.CancelledError:
                if isinstance(step, stampede.TakeLock):  # a lock taken for no one: let it go
                    performed.add_done_callback(
                        functools.partial(self._release_if_taken, lock_key, token)
                    )
                raise
        if not isinstance(decision, stampede.Compute):
            if decision.locked:
                await asyncio.shield(run(sync._release, lock_key, token))
            if isinstance(decision, stampede.Hit):
                return decision.value  # type: ignore[no-any-return]
            sync._count_uncached(decision.error)
            return await self.__wrapped__(*args, **kwargs)
        try:
            value = await self.__wrapped__(*args, **kwargs)
            await run(sync._store_result, entry_key, decision.generation, value)
            return value
        finally:
            if decision.locked:
                await asyncio.shield(run(sync._release, lock_key, token))

    def _release_if_taken(
        self, lock_key: bytes, token: bytes, taking: concurrent.futures.Future[Any]
    ) -> None:
        if taking.cancelled() or taking.exception() is not None or not taking.result():
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile: the lock expires by its TTL
            self.cache._submit(self._sync._release, lock_key, token)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """See :meth:`distqueue.cache.CachedFunction.invalidate`."""
        return await self.cache._run(self._sync.invalidate, *args, **kwargs)

    async def cache_clear(self) -> bool:
        """See :meth:`distqueue.cache.CachedFunction.cache_clear`."""
        return await self.cache._run(self._sync.cache_clear)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<cached async function {self.name} on {self.cache!r}>"
