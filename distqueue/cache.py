"""``Cache`` and ``@cached``: values on memcached, Redis or memory, with one behaviour on all.

::

    cache = Cache("memcached://10.0.0.1:11211,10.0.0.2:11211", namespace="app")
    cache.set("user:42", {"name": "Ada"}, ttl=60)
    cache.get("user:42")

    @cache.cached(ttl=300)
    def report(day: datetime.date) -> dict: ...

The rule of this module: **a failed server is a miss, never an exception** (the one exception
is a counter update whose outcome cannot be known, :class:`OutcomeUnknownError`). Every such
failure is counted in :class:`CacheStats` through a
:class:`~distqueue.cacheops.StatsRecorder`, and logged. The bytes under the cache live in
:mod:`distqueue.kv`; keys of function calls in :mod:`distqueue.callkeys`. What each call does
is written once, in :mod:`distqueue.cacheops`, as operations with no I/O that this blocking
cache and :class:`distqueue.aio.Cache` both perform.

Cached functions
----------------
A call looks up two items in one request: the function's *generation* (a counter under
``{ns}:g:{name}``) and the call's *entry* (``{ns}:f:{name}(args)``), which holds
``[generation, result]``. The entry is a hit only if it was written in the current generation:
``cache_clear()`` increments the generation, which invalidates every entry of the function at
once on every server, without listing them. A generation that is missing (never set, or
evicted) is created at a random 48-bit number, so entries of a lost generation never match
again.

Stampede protection
    On a miss, the caller tries to take the call's lock: ``add`` of ``{ns}:l:...`` with a TTL
    of ``lock_ttl`` seconds (``SET NX PX`` on Redis), so the lock always expires, even if its
    holder dies. The holder looks up the entry once more (the previous holder may have
    stored it and let go of the lock just before), runs the function, stores the entry, and
    deletes the lock (if it still holds it). Every other caller waits: it reads the entry, the
    generation and the lock in one request, first after 5 ms, then doubling the pause up to
    ``POLL_MAX`` (50 ms; the steps are in :mod:`distqueue.stampede`), and

    * returns the entry as soon as it appears;
    * takes the lock itself if the lock is gone without an entry (the holder raised, or
      died and its lock expired), and runs the function;
    * after ``lock_ttl`` seconds of waiting in all, runs the function itself without the lock.

    So with ``N`` callers missing the same key at once (threads or processes), the function
    runs once while it succeeds within ``lock_ttl``; no caller waits longer than ``lock_ttl``
    plus one computation. An exception is not cached: it reaches the caller that ran the
    function, and the next waiter runs the function in turn.

Outage
    When a server fails (during the lookup, taking the lock or waiting), the function runs
    without the cache and its value is returned; the failure is counted in the cache's
    ``stats`` (``server_errors``, ``uncached_calls``) and logged on ``distqueue.cache``. A
    failure to store the result is counted the same way. Errors in the caller's data are
    raised: ``TypeError`` for an argument that cannot be part of a key, ``SerializationError``
    and ``ValueTooLargeError`` for a result that cannot be stored (after the function ran).

``ResultStore`` (:mod:`distqueue.results`), ``Outcome`` (:mod:`distqueue.tasks`) and the
exceptions of caching and results (:mod:`distqueue.errors`) can be imported from here too.
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from . import stampede
from .cacheops import TTL, CacheStats, call_ops, open_cache
from .errors import (
    OutcomeUnknownError,
    ResultMissing,
    ResultTimeout,
    TaskFailed,
    ValueTooLargeError,
)
from .kv.base import DEFAULT, DEFAULT_DEAD_RETRY, CasToken, Default, KVBackend, check_seconds
from .kv.keys import DEFAULT_NAMESPACE
from .kv.steps import drive, run
from .results import ResultStore
from .serializers import Serializer
from .tasks import Outcome

__all__ = [
    "DEFAULT",
    "Cache",
    "CacheStats",
    "CachedFunction",
    "CasToken",
    "Outcome",
    "OutcomeUnknownError",
    "ResultMissing",
    "ResultStore",
    "ResultTimeout",
    "TaskFailed",
    "ValueTooLargeError",
    "cached",
]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LOCK_TTL = 30.0
"""Seconds a stampede lock lives, and the longest a caller waits for another's computation."""


class Cache:
    """A cache on memcached, Redis or in memory, with one behaviour on all three.

    ``url``
        ``memcached://h1:11211,h2:11211`` (keys spread over the servers by pymemcache's
        rendezvous hashing), ``redis://host:6379/0`` (also ``rediss://``, ``unix://``, a
        Cluster's ``redis+cluster://`` and Sentinel's ``redis+sentinel://``, as for queues)
        or ``memory://`` (this process only); see :mod:`distqueue.kv.url`.
    ``namespace``
        the prefix of every key (1 to 64 letters, digits and ``_ . - /``); caches with other
        namespaces on the same servers never see each other's values.
    ``default_ttl``
        seconds a value lives when a call gives no ``ttl``; ``None``: until deleted or evicted.
    ``serializer``
        ``None`` or ``"json"``: the safe JSON serializer (:mod:`distqueue.serializers`);
        ``"pickle"`` only when every writer is trusted; or a serializer object. With the
        built-in ones, ``str`` and ``bytes`` values are stored as they are (no JSON, no
        base64); a serializer object of your own sees every value except counters
        (non-negative ``int``, stored as digits so that ``incr`` works on them).
    ``chunking``
        values larger than the server's item limit (memcached's ``item_size_max``, read from
        the servers; 1 MiB by default) are stored in chunks and read back whole. With
        ``chunking=False`` such a value raises ``ValueTooLargeError`` before anything is written.
    ``compress_min_size``
        payloads of at least this many bytes are compressed with zlib when that saves a tenth
        or more; ``None``: never.
    ``connect_timeout``, ``timeout``
        seconds to wait for a connection (1 s by default), and for each reply (3 s); also
        settable in the URL (``?connect_timeout=1&socket_timeout=3``), as are, on Redis,
        ``retry_window`` and ``outage_limit``. A server that accepts connections and never
        answers costs a call at most ``connect_timeout + timeout`` seconds; on Redis a
        connection refused or reset is retried for ``retry_window`` (3 s); see
        :mod:`distqueue.kv.url`.
    ``dead_retry``
        seconds during which a server that failed is not tried again: calls that need it fail
        at once instead of each waiting for a timeout.

    TTLs are seconds, as ``int`` or ``float``, greater than 0; ``None`` means no expiry.
    memcached keeps whole seconds (a TTL is rounded up) and reads more than 30 days as a date:
    such TTLs are sent as one, computed from this machine's clock, and clamped to the latest
    date memcached can store (2038-01-19 03:14:07 UTC): a value set today with a TTL of 50
    years lives until then. On Redis a TTL is clamped to about 31,700 years.

    Keys are any ``str`` or ``bytes`` (``"a"`` and ``b"a"`` are the same key): they are
    namespaced, and hashed when they would break memcached's rules (250 bytes, no spaces or
    control characters). See :mod:`distqueue.kv.keys`.

    **A server that fails is never an exception here.** A read of its keys is a miss, a write
    to it returns ``False`` (or lists the keys in ``set_many``), ``incr``/``decr`` return
    ``None``; each failure is counted in :attr:`stats` (``server_errors``) and logged on the
    ``distqueue.cache`` logger (WARNING when a server goes down, DEBUG for each failed call).
    After a failure a server is not tried for ``dead_retry`` seconds. Errors in the caller's
    own data are raised: ``SerializationError`` for a value the serializer refuses,
    ``ValueTooLargeError``, ``TypeError`` for a key that is not ``str``/``bytes``,
    ``WrongTypeError`` for ``incr``/``decr`` on a value that is not a counter, ``TypeError``
    for ``append``/``prepend`` on one that is not ``bytes``. ``OutcomeUnknownError`` is the
    one server failure raised: an update that is not idempotent (``incr``, ``decr``, ``cas``,
    ``append``, ``prepend``) whose reply was lost for good.

    A ``Cache`` is safe to share between threads. Values are copies (also with ``memory://``).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        default_ttl: float | None = 300.0,
        serializer: Serializer | str | None = None,
        chunking: bool = True,
        compress_min_size: int | None = 64 * 1024,
        connect_timeout: float | Default = DEFAULT,
        timeout: float | Default = DEFAULT,
        dead_retry: float = DEFAULT_DEAD_RETRY,
    ) -> None:
        self._ops, backend = open_cache(
            url,
            namespace=namespace,
            default_ttl=default_ttl,
            serializer=serializer,
            chunking=chunking,
            compress_min_size=compress_min_size,
            connect_timeout=connect_timeout,
            timeout=timeout,
            dead_retry=dead_retry,
        )
        self._backend: KVBackend = backend
        self.url = url
        self.namespace = namespace
        self.default_ttl = self._ops.default_ttl
        self.serializer = self._ops.values.serializer
        self._options: dict[str, Any] = {
            "namespace": namespace,
            "default_ttl": default_ttl,
            "serializer": serializer,
            "chunking": chunking,
            "compress_min_size": compress_min_size,
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            "dead_retry": dead_retry,
        }
        self._keys = self._ops.keys
        self._stats = self._ops.stats

    # -- bookkeeping ---------------------------------------------------------------------------

    def _ttl(self, ttl: TTL) -> float | None:
        return self._ops.ttl(ttl)

    @property
    def stats(self) -> CacheStats:
        """A snapshot of this object's counters; see :class:`CacheStats`."""
        return self._stats.snapshot()

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str | bytes, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` if there is none.

        A stored ``None`` is returned as ``None``: to tell it from a miss, pass a ``default``
        of your own (``cache.get(key, MISSING)``). A failed server, an expired, evicted or
        corrupt value are all misses.
        """
        return drive(self._ops.get(key, default), self._backend)

    def get_many(self, keys: Iterable[str | bytes]) -> dict[str | bytes, Any]:
        """The values found under ``keys``, by key; keys with no value are left out.

        Costs one round trip per server involved (two when some values are chunked).
        """
        return drive(self._ops.get_many(keys), self._backend)

    # -- writing -------------------------------------------------------------------------------

    def set(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds; ``True`` if it was stored.

        Raises ``SerializationError`` or ``ValueTooLargeError`` before anything is written.
        """
        return drive(self._ops.set(key, value, ttl), self._backend)

    def set_many(
        self,
        values: Mapping[str, Any] | Mapping[bytes, Any] | Mapping[str | bytes, Any],
        ttl: TTL = DEFAULT,
    ) -> list[str | bytes]:
        """Store every value; return the keys that were not stored (empty when all were).

        Every value is serialized before anything is written, so ``SerializationError`` and
        ``ValueTooLargeError`` leave the cache unchanged. Costs one round trip per server.
        """
        return drive(self._ops.set_many(values, ttl), self._backend)

    def add(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` only if ``key`` holds no value; ``True`` if it was stored.

        ``False`` when the key holds a value, or when its server failed (counted).
        """
        return drive(self._ops.add(key, value, ttl), self._backend)

    def replace(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` only if ``key`` holds a value; ``True`` if it was stored.

        ``False`` when the key holds nothing, or when its server failed (counted). Raises
        ``SerializationError`` or ``ValueTooLargeError`` before anything is written.
        """
        return drive(self._ops.replace(key, value, ttl), self._backend)

    def append(self, key: str | bytes, data: bytes) -> bool:
        """Add ``data`` at the end of the ``bytes`` value under ``key``, atomically; ``True``
        if it was added, ``False`` if the key holds nothing (or its server failed, counted).

        Raises ``TypeError``, changing nothing, when ``data`` is not bytes-like or the value
        stored is not a ``bytes`` (a ``str``, a counter, anything else: never a value made
        half of one type and half of another). The value keeps its TTL, except on memcached,
        which cannot tell a TTL, and for a value that is or becomes chunked: those are stored
        again with ``default_ttl``. Like :meth:`cas`, never applied twice: raises
        ``OutcomeUnknownError`` (counted) when a lost reply leaves the outcome unknown.
        """
        return drive(self._ops.add_bytes(key, data, False), self._backend)

    def prepend(self, key: str | bytes, data: bytes) -> bool:
        """Add ``data`` at the start of the ``bytes`` value under ``key``; otherwise as
        :meth:`append`."""
        return drive(self._ops.add_bytes(key, data, True), self._backend)

    def gets(self, key: str | bytes, default: Any = None) -> tuple[Any, CasToken | None]:
        """The value under ``key`` and a token for :meth:`cas`; ``(default, None)`` if there
        is none (a miss as for :meth:`get`: also a failed server or a corrupt value).

        The token is opaque and good for this key only. It stands for the value as stored:
        on memcached its own version (any write in between changes it); on Redis the stored
        bytes (a value written again with the very same bytes counts as unchanged); in
        memory the write that stored it.
        """
        return drive(self._ops.gets(key, default), self._backend)

    def cas(self, key: str | bytes, value: Any, token: CasToken, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` under ``key`` only if it is unchanged since the :meth:`gets` that
        gave ``token``; ``True`` if it was stored, ``False`` if the value changed, expired or
        was deleted meanwhile (or its server failed, counted).

        Atomic on every backend: of several callers holding the same token, one at most
        succeeds. Never applied twice: on Redis a lost reply is retried under the call's
        request id, which returns the first outcome; ``OutcomeUnknownError`` (counted) when no
        attempt learnt it (on memcached at any lost reply: nothing is re-sent there).

        Raises ``TypeError`` for a token that is not a :class:`CasToken`, ``ValueError`` for
        one that ``gets`` gave for another key, and ``SerializationError`` or
        ``ValueTooLargeError`` before anything is written.
        """
        return drive(self._ops.cas(key, value, token, ttl), self._backend)

    def delete(self, key: str | bytes) -> bool:
        """Remove the value under ``key`` (and the chunks of a large one); ``True`` if there
        was one. ``False`` (counted) if its server failed."""
        return drive(self._ops.delete(key), self._backend)

    def touch(self, key: str | bytes, ttl: TTL = DEFAULT) -> bool:
        """Give the value under ``key`` a new TTL (counted from now); ``True`` if there was one.

        ``ttl=None`` removes its expiry. A chunked value has its chunks touched too.
        """
        return drive(self._ops.touch(key, ttl), self._backend)

    def incr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """Add ``delta`` to the counter under ``key``, atomically, and return its new value.

        A missing counter is created holding ``delta``, living ``ttl`` seconds (the TTL of an
        existing counter does not change). Any value stored as a non-negative ``int`` is a
        counter. Counters stay between 0 and ``2**63 - 1``: going above is refused by Redis
        and memory (``None``, counted) and wraps around on memcached. Returns ``None`` if the
        server failed before the update was sent (counted): nothing changed. Raises
        ``WrongTypeError`` if the key holds another value.

        Raises ``OutcomeUnknownError`` (counted), the one server failure that is not swallowed,
        when the update was sent and its reply lost, so that it may or may not have happened:
        never added twice, never guessed. On Redis a lost reply (a connection closed or reset
        after sending) is retried at once on a fresh connection under the same request id,
        which returns the first outcome without adding again; ``OutcomeUnknownError`` then means
        the server did not answer within ``timeout`` or went away for good. memcached has no
        request ids, so nothing is ever re-sent there: any failure after the command left
        (a timeout, a connection closed before the reply) is ``OutcomeUnknownError``.
        """
        return drive(self._ops.add_to_counter(True, key, delta, ttl), self._backend)

    def decr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """Subtract ``delta`` from the counter under ``key``, stopping at 0 (as memcached
        does); return its new value. A missing counter is created holding 0. Otherwise as
        :meth:`incr`."""
        return drive(self._ops.add_to_counter(False, key, delta, ttl), self._backend)

    # -- decorating ----------------------------------------------------------------------------

    def cached(
        self,
        ttl: TTL = DEFAULT,
        *,
        key: Callable[..., Any] | None = None,
        name: str | None = None,
        lock_ttl: float = DEFAULT_LOCK_TTL,
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Decorate a function so that its results are cached; see
        :class:`CachedFunction`.

        ``ttl``: seconds a result lives (default: the cache's ``default_ttl``). ``key``: a
        function of the call's arguments returning what identifies the call (needed when an
        argument, such as ``self``, cannot be part of a key). ``name``: the name in the keys
        (default: ``module.qualname``). ``lock_ttl``: seconds the stampede lock lives, which
        is also the longest a caller waits for another caller's computation.

        Decorating raises ``TypeError`` for a function that its ``module.qualname`` does not
        identify (a lambda, a function defined inside another, a bound method, a
        ``functools.partial``) unless ``name`` or ``key`` is given.
        """
        seconds = self._ttl(ttl)
        lock_seconds = check_seconds(lock_ttl, "lock_ttl")

        def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
            return CachedFunction(
                self,
                func,
                ttl=seconds,
                key=key,
                name=name,
                lock_ttl=lock_seconds,
            )

        return decorate

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections. Values stay on the servers."""
        self._backend.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Cache url={self.url!r} namespace={self.namespace!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to another process (multiprocessing, say), a cache opens the same servers there.
        if not self._backend.shared:
            raise TypeError(
                "a Cache on memory:// cannot be sent to another process; give it a "
                "memcached:// or redis:// URL"
            )
        return (_reopen, (self.url, self._options))


class CachedFunction(Generic[P, R]):
    """A function whose results are cached in a :class:`Cache`.

    Call it as the function. ``cache_clear()`` forgets every cached result of the function,
    ``invalidate(*args, **kwargs)`` the result of one call; ``cache`` is the cache and
    ``__wrapped__`` the function. On a method, pass ``key=`` (``self`` cannot be part of a
    key) and give ``invalidate`` the instance as first argument.

    Calls are keyed by the function's name, ``module.qualname``, which names one function only
    when it is defined at the top level of a module or in a class there. A lambda, a function
    defined inside another function (a closure: ``make_adder(1)`` and ``make_adder(100)``
    would share one name), a bound method or a ``functools.partial`` raises ``TypeError``
    unless given ``name=`` (a name that tells it apart, closed-over values included) or
    ``key=`` (a key function that does).
    """

    def __init__(
        self,
        cache: Cache,
        func: Callable[P, R],
        *,
        ttl: float | None,
        key: Callable[..., Any] | None,
        name: str | None,
        lock_ttl: float,
    ) -> None:
        self._calls = call_ops(cache._ops, func, ttl=ttl, key=key, name=name, lock_ttl=lock_ttl)
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.__name__: str = getattr(func, "__name__", name or repr(func))
        self.cache = cache
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self.name = self._calls.name
        self._backend = cache._backend

    # -- calling -------------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        calls, backend = self._calls, self._backend
        entry_key = calls.entry_key(args, kwargs)
        token = calls.new_token()

        def perform(step: stampede.Step) -> Any:
            if isinstance(step, stampede.Pause):
                time.sleep(step.seconds)
                return None
            return drive(calls.perform(step, entry_key, token), backend)

        # the steps of distqueue.stampede, a failed one thrown back in as its BackendError
        decision = run(stampede.plan(calls.stats, self.name, self.lock_ttl), perform)
        if isinstance(decision, stampede.Compute):
            try:
                value = self.__wrapped__(*args, **kwargs)
                drive(calls.store_result(entry_key, decision.generation, value), backend)
                return value
            finally:
                if decision.locked:
                    drive(calls.release(entry_key, token), backend)
        if decision.locked:
            drive(calls.release(entry_key, token), backend)
        if isinstance(decision, stampede.Hit):
            return decision.value  # type: ignore[no-any-return]
        calls.count_uncached(decision.error)
        return self.__wrapped__(*args, **kwargs)

    # -- forgetting ----------------------------------------------------------------------------

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of the call ``f(*args, **kwargs)``; ``True`` if there was
        one. ``False`` (counted) if its server failed."""
        return drive(self._calls.invalidate(args, kwargs), self._backend)

    def cache_clear(self) -> bool:
        """Forget every cached result of the function, in every process; ``True`` on success.

        ``False`` (counted, logged) if the server of the function's generation failed: then
        nothing changed, unless the reply to the change was lost (``OutcomeUnknownError``, logged),
        when it may have.
        """
        return drive(self._calls.cache_clear(), self._backend)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<cached function {self.name} on {self.cache!r}>"


def _reopen(url: str, options: dict[str, Any]) -> Cache:
    return Cache(url, **options)


def cached(
    url: str,
    ttl: TTL = DEFAULT,
    *,
    key: Callable[..., Any] | None = None,
    name: str | None = None,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    **cache_options: Any,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """``Cache(url, **cache_options).cached(ttl, ...)``, for a function that needs its own cache.

    The cache is the decorated function's ``cache`` attribute.
    """
    return Cache(url, **cache_options).cached(ttl, key=key, name=name, lock_ttl=lock_ttl)
