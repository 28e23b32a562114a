"""``Cache`` and ``@cached`` for asyncio code: :class:`distqueue.Cache`'s behaviour, awaited.

::

    cache = distqueue.aio.Cache("redis://localhost:6379/0", namespace="app")
    await cache.set("user:42", {"name": "Ada"}, ttl=60)
    await cache.get("user:42")

    @cache.cached(ttl=300)
    async def report(day: datetime.date) -> dict: ...

Nothing of the cache's behaviour is written here: keys, value framing and chunking, counters,
cas tokens, statistics, default TTLs and the rule that a failed server is a miss are the
operations of :mod:`distqueue.cacheops`, which the blocking cache runs too. What differs is
who performs their calls:

* **Redis** (every Redis URL: one server, ``redis+cluster://``, ``redis+sentinel://``, and
  their TLS forms): the calls are awaited on redis-py's asyncio clients
  (:mod:`distqueue.kv.aioredis`), with no thread, with the blocking backend's commands,
  scripts, request ids, retries and time limits. (A host name, rather than an address, is
  looked up by asyncio itself, in the event loop's default executor, when a connection opens.)
* **memcached** and **memory**: each call runs whole, on the sync cache's clients, in a
  bounded pool of threads (``max_threads``, 8 by default) and is awaited, so the event loop
  never blocks on a server; a call holds a thread for at most the sync call's own bound
  (``connect_timeout + timeout`` per server). memcached has no asyncio client with the time
  limits, server hashing and error handling pymemcache gives (the sync cache's client).

A cached ``async def`` function runs once for many callers missing one key at once: the tasks
of one process that miss it while a call is under way wait for that call, then read its
value; callers in other processes (or on other event loops) wait for the cache's lock, as with
:meth:`distqueue.Cache.cached` (see :mod:`distqueue.stampede`). The function itself runs on the
caller's event loop.

Cancelling a call (``asyncio.timeout``, ``wait_for``) stops it at once. On Redis the call ends
where it stands: a command awaiting its reply has its connection closed (the client stays
usable), and a write may or may not have been made, as a write whose reply was lost (an
``incr`` then counts once or not at all, never twice; a large value's chunks written before
the cancellation go with their TTL). On the thread pool, a call already handed to a thread
finishes there, and its effect takes place or not as if the caller had not been cancelled.
A stampede lock that a cancelled caller may have taken is let go in the background.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from .. import cache as sync_cache
from .. import stampede
from ..cache import DEFAULT, DEFAULT_LOCK_TTL, CacheStats, CasToken
from ..cacheops import TTL, CacheOps, call_ops, open_cache
from ..kv.base import check_seconds
from ..kv.steps import KVOp, adrive, arun, drive
from ..url import ANY_REDIS_SCHEMES

__all__ = ["Cache", "CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_MAX_THREADS = 8
"""Threads of one :class:`Cache` (memcached, memory) that run calls at once; more calls wait for
a free thread."""


def _on_redis(url: object) -> bool:
    return isinstance(url, str) and url.partition("://")[0].lower() in ANY_REDIS_SCHEMES


class Cache:
    """:class:`distqueue.Cache` for asyncio code: the same arguments and behaviour, every call
    awaited (``aclose()`` and ``async with`` too), and :meth:`cached` for ``async def``
    functions. The arguments, return values and exceptions of each method are those of the
    method of the same name of :class:`distqueue.Cache`.

    On a Redis URL every call is awaited on redis-py's asyncio clients, in the event loop's own
    thread; on memcached and memory it runs in a pool of threads, ``max_threads`` calls at
    once (further calls wait their turn); see the module docstring.

    ``sync`` is a blocking :class:`distqueue.Cache` on the same URL and namespace, usable from
    threads, whose :attr:`stats` are this cache's: on memcached and memory the very cache
    whose clients (or storage) the pool uses; on Redis one made at its first use, with
    blocking clients of its own (a Cluster's is made by reading its layout, then and there).
    """

    def __init__(self, url: str, *, max_threads: int = DEFAULT_MAX_THREADS, **options: Any) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ValueError(f"max_threads must be an int >= 1, not {max_threads!r}")
        self.url = url
        self.max_threads = max_threads
        self._options = options
        self._sync: sync_cache.Cache | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None
        self._ops: CacheOps
        if _on_redis(url):
            # the sync cache's signature gives the defaults, and refuses unknown arguments
            settings = inspect.signature(sync_cache.Cache).bind(url, **options)
            settings.apply_defaults()
            arguments = dict(settings.arguments)
            del arguments["url"]
            self._ops, self._backend = open_cache(url, asyncio=True, **arguments)
        else:
            self._sync = sync_cache.Cache(url, **options)
            self._ops, self._backend = self._sync._ops, self._sync._backend
            self._threads = concurrent.futures.ThreadPoolExecutor(
                max_threads, thread_name_prefix="distqueue-cache"
            )
        self.namespace: str = self._ops.keys.namespace
        self.default_ttl = self._ops.default_ttl
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def sync(self) -> sync_cache.Cache:
        """The blocking cache on the same URL and namespace (see the class docstring)."""
        if self._sync is None:
            sync = sync_cache.Cache(self.url, **self._options)
            sync._ops.stats = sync._stats = self._ops.stats  # one set of counters
            self._sync = sync
        return self._sync

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Cache is closed")

    async def _perform(self, operation: KVOp[T]) -> T:
        """Perform ``operation`` (see :mod:`distqueue.cacheops`): awaited on Redis, else in the
        pool."""
        self._check_open()
        if self._threads is None:
            return await adrive(operation, self._backend)
        return await asyncio.wrap_future(self._threads.submit(drive, operation, self._backend))

    async def _perform_or_undo(self, operation: KVOp[Any], undo: Callable[[], KVOp[None]]) -> Any:
        """As :meth:`_perform`; if the caller is cancelled meanwhile, ``undo()`` is performed
        in the background once ``operation`` may have succeeded (returned true)."""
        self._check_open()
        if self._threads is None:
            try:
                return await adrive(operation, self._backend)
            except asyncio.CancelledError:
                self._spawn(adrive(undo(), self._backend))
                raise
        threads = self._threads
        future = threads.submit(drive, operation, self._backend)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:

            def after(done: concurrent.futures.Future[Any]) -> None:
                if done.cancelled() or done.exception() is not None or not done.result():
                    return
                with contextlib.suppress(RuntimeError):  # closed meanwhile: left to its TTL
                    threads.submit(drive, undo(), self._backend)

            future.add_done_callback(after)
            raise

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        """Run ``coroutine`` in a task of its own, which :meth:`aclose` waits for."""

        async def guarded() -> None:
            with contextlib.suppress(Exception):  # a failure leaves the lock to its TTL
                await coroutine

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters; see :class:`distqueue.cache.CacheStats`."""
        return self._ops.stats.snapshot()

    # -- the calls of distqueue.Cache, awaited --------------------------------------------------

    async def get(self, key: str | bytes, default: Any = None) -> Any:
        """See :meth:`distqueue.Cache.get`."""
        return await self._perform(self._ops.get(key, default))

    async def get_many(self, keys: Iterable[str | bytes]) -> dict[str | bytes, Any]:
        """See :meth:`distqueue.Cache.get_many`."""
        return await self._perform(self._ops.get_many(keys))

    async def set(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.set`."""
        return await self._perform(self._ops.set(key, value, ttl))

    async def set_many(
        self,
        values: Mapping[str, Any] | Mapping[bytes, Any] | Mapping[str | bytes, Any],
        ttl: TTL = DEFAULT,
    ) -> list[str | bytes]:
        """See :meth:`distqueue.Cache.set_many`."""
        return await self._perform(self._ops.set_many(values, ttl))

    async def add(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.add`."""
        return await self._perform(self._ops.add(key, value, ttl))

    async def replace(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.replace`."""
        return await self._perform(self._ops.replace(key, value, ttl))

    async def append(self, key: str | bytes, data: bytes) -> bool:
        """See :meth:`distqueue.Cache.append`."""
        return await self._perform(self._ops.add_bytes(key, data, False))

    async def prepend(self, key: str | bytes, data: bytes) -> bool:
        """See :meth:`distqueue.Cache.prepend`."""
        return await self._perform(self._ops.add_bytes(key, data, True))

    async def gets(self, key: str | bytes, default: Any = None) -> tuple[Any, CasToken | None]:
        """See :meth:`distqueue.Cache.gets`."""
        return await self._perform(self._ops.gets(key, default))

    async def cas(self, key: str | bytes, value: Any, token: CasToken, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.cas`."""
        return await self._perform(self._ops.cas(key, value, token, ttl))

    async def delete(self, key: str | bytes) -> bool:
        """See :meth:`distqueue.Cache.delete`."""
        return await self._perform(self._ops.delete(key))

    async def touch(self, key: str | bytes, ttl: TTL = DEFAULT) -> bool:
        """See :meth:`distqueue.Cache.touch`."""
        return await self._perform(self._ops.touch(key, ttl))

    async def incr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """See :meth:`distqueue.Cache.incr` (``OutcomeUnknownError`` included)."""
        return await self._perform(self._ops.add_to_counter(True, key, delta, ttl))

    async def decr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """See :meth:`distqueue.Cache.decr`."""
        return await self._perform(self._ops.add_to_counter(False, key, delta, ttl))

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
        seconds = self._ops.ttl(ttl)
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
        """Wait for the calls under way (on the pool) and for locks being let go, then release
        the connections. Values stay."""
        if self._closed:
            return
        self._closed = True
        while self._background:
            running = list(self._background)
            await asyncio.gather(*running, return_exceptions=True)
            self._background.difference_update(running)
        if self._threads is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._threads.shutdown, True)
        else:
            await self._backend.aclose()
        if self._sync is not None:
            self._sync.close()

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
        self._calls = call_ops(cache._ops, func, ttl=ttl, key=key, name=name, lock_ttl=lock_ttl)
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.__name__: str = getattr(func, "__name__", name or repr(func))
        self.cache = cache
        self.name = self._calls.name
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        # Calls under way in this process, by event loop and entry: the tasks that miss the
        # same entry meanwhile wait for the call, then read its value.
        self._under_way: dict[tuple[asyncio.AbstractEventLoop, bytes], asyncio.Future[None]] = {}

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        entry_key = self._calls.entry_key(args, kwargs)
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
        """Drive :func:`distqueue.stampede.plan`, each step performed by the cache."""
        calls, cache = self._calls, self.cache
        token = calls.new_token()

        def release() -> KVOp[None]:
            return calls.release(entry_key, token)

        async def perform(step: stampede.Step) -> Any:
            if isinstance(step, stampede.Pause):
                await asyncio.sleep(step.seconds)
                return None
            operation = calls.perform(step, entry_key, token)
            if isinstance(step, stampede.TakeLock):  # a lock taken for no one is let go
                return await cache._perform_or_undo(operation, release)
            return await cache._perform(operation)

        decision = await arun(stampede.plan(calls.stats, self.name, self.lock_ttl), perform)
        if not isinstance(decision, stampede.Compute):
            if decision.locked:
                await asyncio.shield(cache._perform(release()))
            if isinstance(decision, stampede.Hit):
                return decision.value  # type: ignore[no-any-return]
            calls.count_uncached(decision.error)
            return await self.__wrapped__(*args, **kwargs)
        try:
            value = await self.__wrapped__(*args, **kwargs)
            await cache._perform(calls.store_result(entry_key, decision.generation, value))
            return value
        finally:
            if decision.locked:
                await asyncio.shield(cache._perform(release()))

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """See :meth:`distqueue.cache.CachedFunction.invalidate`."""
        return await self.cache._perform(self._calls.invalidate(args, kwargs))

    async def cache_clear(self) -> bool:
        """See :meth:`distqueue.cache.CachedFunction.cache_clear`."""
        return await self.cache._perform(self._calls.cache_clear())

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<cached async function {self.name} on {self.cache!r}>"
