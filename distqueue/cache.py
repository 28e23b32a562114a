"""``Cache`` and ``@cached``: values on memcached, Redis or memory, with one behaviour on all.

::

    cache = Cache("memcached://10.0.0.1:11211,10.0.0.2:11211", namespace="app")
    cache.set("user:42", {"name": "Ada"}, ttl=60)
    cache.get("user:42")

    @cache.cached(ttl=300)
    def report(day: datetime.date) -> dict: ...

The rule of this module: **a failed server is a miss, never an exception** (the one exception
is a counter update whose outcome cannot be known, :class:`OutcomeUnknownError`). Every such
failure is counted in :class:`CacheStats` through a :class:`StatsRecorder`, and logged. The
bytes under the cache live in :mod:`distqueue.kv`; keys of function calls in
:mod:`distqueue.callkeys`.

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
import secrets
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, ParamSpec, TypeVar

from . import stampede
from .callkeys import CallKeys, call_key, function_name, why_name_is_ambiguous
from .errors import (
    BackendError,
    OutcomeUnknownError,
    ResultMissing,
    ResultTimeout,
    TaskFailed,
    ValueTooLargeError,
    WrongTypeError,
)
from .kv.base import (
    DEFAULT,
    DEFAULT_DEAD_RETRY,
    CasToken,
    Default,
    check_seconds,
    check_ttl,
    logger,
)
from .kv.frames import COUNTER_MAX, Corrupt, parse_counter
from .kv.keys import DEFAULT_NAMESPACE
from .kv.values import MISSING, ValueStore, open_values
from .results import ResultStore
from .serializers import Serializer, get_serializer
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

TTL = float | int | None | Default
"""A ``ttl`` argument: seconds, ``None`` for no expiry, or ``DEFAULT`` for ``default_ttl``."""


@dataclass(frozen=True)
class CacheStats:
    """What one :class:`Cache` object has counted since it was made (this process only).

    ``hits``, ``misses``
        keys read and found, or not (a corrupt value or a failed server is a miss too)
    ``server_errors``
        calls (per server) that failed because a server could not be reached or refused a
        command, and so were a miss, a write that did not happen, or an uncached call
    ``corrupt_values``
        values found but unusable: undecodable, or chunks missing or not matching
    ``stampede_waits``
        cached calls that waited for another caller's computation and got its value
    ``stampede_timeouts``
        cached calls that waited ``lock_ttl`` seconds in vain and computed the value themselves
    ``uncached_calls``
        cached calls that ran the function without the cache because a server failed
    """

    hits: int = 0
    misses: int = 0
    server_errors: int = 0
    corrupt_values: int = 0
    stampede_waits: int = 0
    stampede_timeouts: int = 0
    uncached_calls: int = 0


_STAT_NAMES = tuple(field.name for field in fields(CacheStats))


class StatsRecorder:
    """The counters behind :attr:`Cache.stats`, safe to update from any thread.

    Each method records one kind of event; the two that a caller never sees as an exception
    (a failed server, an unusable value) are logged here too. :meth:`snapshot` reads every
    counter at once.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_STAT_NAMES, 0)

    def _add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def hit(self) -> None:
        self._add("hits")

    def miss(self) -> None:
        self._add("misses")

    def looked_up(self, hits: int, misses: int) -> None:
        """Count the hits and misses of one call on several keys."""
        with self._lock:
            self._counts["hits"] += hits
            self._counts["misses"] += misses

    def server_error(self, error: BackendError, what: str) -> None:
        """A server failed during ``what``, and the caller was not told (a miss, ``False``)."""
        self._add("server_errors")
        logger.debug("cache %s: %s", what, error)

    def corrupt(self, key: object, reason: str) -> None:
        """The value under ``key`` was found but cannot be used; it counts as a miss."""
        self._add("corrupt_values")
        logger.warning("cache value under %r is unusable (%s); counted as a miss", key, reason)

    def stampede_wait(self) -> None:
        self._add("stampede_waits")

    def stampede_timeout(self) -> None:
        self._add("stampede_timeouts")

    def uncached_call(self) -> None:
        self._add("uncached_calls")

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self._counts)


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
        if compress_min_size is not None and (
            isinstance(compress_min_size, bool)
            or not isinstance(compress_min_size, int)
            or compress_min_size < 0
        ):
            raise ValueError(
                f"compress_min_size must be an int >= 0 or None, not {compress_min_size!r}"
            )
        self.url = url
        self.namespace = namespace
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
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
        self.serializer = get_serializer(serializer)
        self._store = open_values(
            url,
            namespace=namespace,
            serializer=self.serializer,
            chunking=chunking,
            compress_min_size=compress_min_size,
            connect_timeout=connect_timeout,
            timeout=timeout,
            dead_retry=dead_retry,
        )
        self._backend = self._store.backend
        self._keys = self._store.keys
        self._stats = StatsRecorder()

    # -- bookkeeping ---------------------------------------------------------------------------

    def _ttl(self, ttl: TTL) -> float | None:
        if ttl is DEFAULT:
            return self.default_ttl
        return check_ttl(ttl)

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
        skey = self._keys.value_key(key)
        try:
            item = self._backend.get(skey)
            if item is None:
                self._stats.miss()
                return default
            value = self._store.decode(item)
        except BackendError as exc:
            self._stats.server_error(exc, "get")
            self._stats.miss()
            return default
        except Corrupt as exc:
            self._stats.corrupt(key, str(exc))
            self._stats.miss()
            return default
        self._stats.hit()
        return value

    def get_many(self, keys: Iterable[str | bytes]) -> dict[str | bytes, Any]:
        """The values found under ``keys``, by key; keys with no value are left out.

        Costs one round trip per server involved (two when some values are chunked).
        """
        keys = list(keys)
        if not keys:
            return {}
        value_key = self._keys.value_key
        skeys = [value_key(key) for key in keys]
        values, failures, corrupt = self._store.read_many(skeys)
        for failure in failures:
            self._stats.server_error(failure.error, f"get_many ({len(failure.keys)} keys)")
        if corrupt:
            original = dict(zip(skeys, keys, strict=True))
            for skey, reason in corrupt:
                self._stats.corrupt(original[skey], reason)
        found = {key: values[skey] for key, skey in zip(keys, skeys, strict=True) if skey in values}
        self._stats.looked_up(len(found), len(keys) - len(found))
        return found

    # -- writing -------------------------------------------------------------------------------

    def set(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds; ``True`` if it was stored.

        Raises ``SerializationError`` or ``ValueTooLargeError`` before anything is written.
        """
        skey = self._keys.value_key(key)
        seconds = self._ttl(ttl)
        body = self._store.encode(value)
        try:
            self._store.write(skey, body, seconds)
        except BackendError as exc:
            self._stats.server_error(exc, "set")
            return False
        return True

    def set_many(
        self,
        values: Mapping[str, Any] | Mapping[bytes, Any] | Mapping[str | bytes, Any],
        ttl: TTL = DEFAULT,
    ) -> list[str | bytes]:
        """Store every value; return the keys that were not stored (empty when all were).

        Every value is serialized before anything is written, so ``SerializationError`` and
        ``ValueTooLargeError`` leave the cache unchanged. Costs one round trip per server.
        """
        seconds = self._ttl(ttl)
        value_key = self._keys.value_key
        encode = self._store.encode
        bodies = {value_key(key): encode(value) for key, value in values.items()}
        not_stored, failures = self._store.write_many(bodies, seconds)
        for failure in failures:
            self._stats.server_error(failure.error, f"set_many ({len(failure.keys)} keys)")
        if not not_stored:
            return []
        return [key for key in values if value_key(key) in not_stored]

    def add(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` only if ``key`` holds no value; ``True`` if it was stored.

        ``False`` when the key holds a value, or when its server failed (counted).
        """
        skey = self._keys.value_key(key)
        seconds = self._ttl(ttl)
        body = self._store.encode(value)
        try:
            return self._store.add(skey, body, seconds)
        except BackendError as exc:
            self._stats.server_error(exc, "add")
            return False

    def replace(self, key: str | bytes, value: Any, ttl: TTL = DEFAULT) -> bool:
        """Store ``value`` only if ``key`` holds a value; ``True`` if it was stored.

        ``False`` when the key holds nothing, or when its server failed (counted). Raises
        ``SerializationError`` or ``ValueTooLargeError`` before anything is written.
        """
        skey = self._keys.value_key(key)
        seconds = self._ttl(ttl)
        body = self._store.encode(value)
        try:
            return self._store.replace(skey, body, seconds)
        except BackendError as exc:
            self._stats.server_error(exc, "replace")
            return False

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
        return self._add_bytes(key, data, prepend=False)

    def prepend(self, key: str | bytes, data: bytes) -> bool:
        """Add ``data`` at the start of the ``bytes`` value under ``key``; otherwise as
        :meth:`append`."""
        return self._add_bytes(key, data, prepend=True)

    def _add_bytes(self, key: str | bytes, data: bytes, *, prepend: bool) -> bool:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        skey = self._keys.value_key(key)
        what = "prepend" if prepend else "append"
        try:
            return self._store.append(skey, bytes(data), prepend, self.default_ttl)
        except TypeError as exc:
            raise TypeError(f"{what} to {key!r}: {exc}") from None
        except OutcomeUnknownError as exc:
            self._stats.server_error(exc, what)
            raise
        except BackendError as exc:
            self._stats.server_error(exc, what)
            return False
        except Corrupt as exc:
            self._stats.corrupt(key, str(exc))
            return False

    def gets(self, key: str | bytes, default: Any = None) -> tuple[Any, CasToken | None]:
        """The value under ``key`` and a token for :meth:`cas`; ``(default, None)`` if there
        is none (a miss as for :meth:`get`: also a failed server or a corrupt value).

        The token is opaque and good for this key only. It stands for the value as stored:
        on memcached its own version (any write in between changes it); on Redis the stored
        bytes (a value written again with the very same bytes counts as unchanged); in
        memory the write that stored it.
        """
        skey = self._keys.value_key(key)
        try:
            value, token = self._store.gets(skey)
        except BackendError as exc:
            self._stats.server_error(exc, "gets")
            self._stats.miss()
            return default, None
        except Corrupt as exc:
            self._stats.corrupt(key, str(exc))
            self._stats.miss()
            return default, None
        if token is None:
            self._stats.miss()
            return default, None
        self._stats.hit()
        return value, token

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
        if not isinstance(token, CasToken):
            raise TypeError(f"token must be a CasToken from Cache.gets, not {type(token).__name__}")
        skey = self._keys.value_key(key)
        if token.key != skey:
            raise ValueError(f"the token was given by gets() for another key than {key!r}")
        seconds = self._ttl(ttl)
        body = self._store.encode(value)
        try:
            return self._store.cas(body, seconds, token)
        except OutcomeUnknownError as exc:
            self._stats.server_error(exc, "cas")
            raise
        except BackendError as exc:
            self._stats.server_error(exc, "cas")
            return False

    def delete(self, key: str | bytes) -> bool:
        """Remove the value under ``key`` (and the chunks of a large one); ``True`` if there
        was one. ``False`` (counted) if its server failed."""
        try:
            return self._store.delete(self._keys.value_key(key))
        except BackendError as exc:
            self._stats.server_error(exc, "delete")
            return False

    def touch(self, key: str | bytes, ttl: TTL = DEFAULT) -> bool:
        """Give the value under ``key`` a new TTL (counted from now); ``True`` if there was one.

        ``ttl=None`` removes its expiry. A chunked value has its chunks touched too.
        """
        skey = self._keys.value_key(key)
        seconds = self._ttl(ttl)
        try:
            item = self._backend.get(skey)
            if item is None:
                return False
            if item[:1] == b"#":
                for chunk_key in self._store.chunk_keys(self._store.manifest(item)):
                    self._backend.touch(chunk_key, seconds)
            return self._backend.touch(skey, seconds)
        except BackendError as exc:
            self._stats.server_error(exc, "touch")
            return False
        except Corrupt as exc:
            self._stats.corrupt(key, str(exc))
            return False

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
        return self._add_to_counter(True, key, delta, ttl)

    def decr(self, key: str | bytes, delta: int = 1, *, ttl: TTL = DEFAULT) -> int | None:
        """Subtract ``delta`` from the counter under ``key``, stopping at 0 (as memcached
        does); return its new value. A missing counter is created holding 0. Otherwise as
        :meth:`incr`."""
        return self._add_to_counter(False, key, delta, ttl)

    def _add_to_counter(self, up: bool, key: str | bytes, delta: int, ttl: TTL) -> int | None:
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, not {type(delta).__name__}")
        if not 0 <= delta <= COUNTER_MAX:
            raise ValueError(f"delta must be between 0 and 2**63 - 1, not {delta}")
        skey = self._keys.value_key(key)
        seconds = self._ttl(ttl)
        try:
            if up:
                return self._backend.incr(skey, delta, seconds)
            return self._backend.decr(skey, delta, seconds)
        except WrongTypeError as exc:
            raise WrongTypeError(f"the value under {key!r} is not a counter", key=exc.key) from exc
        except OutcomeUnknownError as exc:
            self._stats.server_error(exc, "incr" if up else "decr")
            raise
        except BackendError as exc:
            self._stats.server_error(exc, "incr" if up else "decr")
            return None

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
                store=self._store,
                stats=self._stats,
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
        store: ValueStore,
        stats: StatsRecorder,
        ttl: float | None,
        key: Callable[..., Any] | None,
        name: str | None,
        lock_ttl: float,
    ) -> None:
        if key is None and name is None:
            why = why_name_is_ambiguous(func)
            if why is not None:
                raise TypeError(
                    f"cannot cache {func!r} under its own name: {why}, so cached results of "
                    "one could be returned for another. Pass name=... (a name that tells it "
                    "apart, closed-over values included) or key=..."
                )
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.__name__: str = getattr(func, "__name__", name or repr(func))
        self.cache = cache
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self.name = name if name is not None else function_name(func)
        self._key_func = key
        self._call_keys = CallKeys(self.name, func)
        self._store = store
        self._backend = store.backend
        self._keys = store.keys
        self._stats = stats
        self._generation_key = self._keys.key("g", self.name)

    # -- keys ----------------------------------------------------------------------------------

    def _entry_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        if self._key_func is not None:
            text = call_key(self.name, None, (self._key_func(*args, **kwargs),), {})
        else:
            text = self._call_keys(args, kwargs)
        return self._keys.key("f", text)

    # -- calling -------------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        entry_key = self._entry_key(args, kwargs)
        lock_key = self._keys.key("l", entry_key)
        token = secrets.token_hex(16).encode("ascii")
        steps = stampede.plan(self._stats, self.name, self.lock_ttl)
        reply: Any = None
        error: BackendError | None = None
        while True:  # perform the plan's steps (see distqueue.stampede)
            try:
                step = steps.send(reply) if error is None else steps.throw(error)
            except StopIteration as done:
                decision: stampede.Decision = done.value
                break
            reply, error = None, None
            try:
                reply = self._perform(step, entry_key, lock_key, token)
            except BackendError as exc:
                error = exc
        if isinstance(decision, stampede.Compute):
            try:
                value = self.__wrapped__(*args, **kwargs)
                self._store_result(entry_key, decision.generation, value)
                return value
            finally:
                if decision.locked:
                    self._release(lock_key, token)
        if decision.locked:
            self._release(lock_key, token)
        if isinstance(decision, stampede.Hit):
            return decision.value  # type: ignore[no-any-return]
        self._count_uncached(decision.error)
        return self.__wrapped__(*args, **kwargs)

    def _perform(self, step: stampede.Step, entry_key: bytes, lock_key: bytes, token: bytes) -> Any:
        """Perform one step of :func:`distqueue.stampede.plan` and return its reply."""
        if isinstance(step, stampede.Lookup):
            return self._lookup(entry_key, lock_key if step.lock else None)
        if isinstance(step, stampede.TakeLock):
            return self._backend.add(lock_key, token, self.lock_ttl)
        time.sleep(step.seconds)
        return None

    def _lookup(self, entry_key: bytes, lock_key: bytes | None = None) -> tuple[int, Any, bool]:
        """The current generation, the entry's value (``MISSING`` if it has none) and, when
        ``lock_key`` is given, whether the lock is held; all read in one request."""
        keys = [self._generation_key, entry_key]
        if lock_key is not None:
            keys.append(lock_key)
        found, failures = self._backend.get_many(keys)
        if failures:
            raise failures[0].error
        locked = lock_key is not None and lock_key in found
        item = found.get(self._generation_key)
        generation = parse_counter(item) if item is not None else None
        if generation is None:
            generation = self._new_generation()
        item = found.get(entry_key)
        if item is None:
            return generation, MISSING, locked
        try:
            entry = self._store.decode(item)
        except Corrupt as exc:
            self._stats.corrupt(entry_key, str(exc))
            return generation, MISSING, locked
        if type(entry) is list and len(entry) == 2 and entry[0] == generation:
            return generation, entry[1], locked
        return generation, MISSING, locked

    def _new_generation(self) -> int:
        """Create the missing generation counter at a random number, and return it."""
        candidate = secrets.randbits(48) + 1
        if self._backend.add(self._generation_key, str(candidate).encode("ascii"), None):
            return candidate
        item = self._backend.get(self._generation_key)  # created by another caller meanwhile
        current = parse_counter(item) if item is not None else None
        return candidate if current is None else current

    def _store_result(self, entry_key: bytes, generation: int, value: Any) -> None:
        """Store ``value`` as the entry of ``generation``; a failed server is counted.
        Raises ``SerializationError`` or ``ValueTooLargeError`` for a value it cannot store."""
        body = self._store.encode([generation, value])
        try:
            self._store.write(entry_key, body, self.ttl)
        except BackendError as exc:
            self._stats.server_error(exc, f"storing a result of {self.name}")

    def _release(self, lock_key: bytes, token: bytes) -> None:
        # Only our own lock: if it expired meanwhile, another caller may hold a new one. (The
        # read and the delete are two commands; losing that race costs one more computation.)
        try:
            if self._backend.get(lock_key) == token:
                self._backend.delete(lock_key)
        except BackendError as exc:
            self._stats.server_error(exc, f"releasing the lock of {self.name}")

    def _count_uncached(self, error: BackendError) -> None:
        self._stats.server_error(error, f"cached call of {self.name}")
        self._stats.uncached_call()

    # -- forgetting ----------------------------------------------------------------------------

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of the call ``f(*args, **kwargs)``; ``True`` if there was
        one. ``False`` (counted) if its server failed."""
        try:
            return self._store.delete(self._entry_key(args, kwargs))
        except BackendError as exc:
            self._stats.server_error(exc, f"invalidate of {self.name}")
            return False

    def cache_clear(self) -> bool:
        """Forget every cached result of the function, in every process; ``True`` on success.

        ``False`` (counted, logged) if the server of the function's generation failed: then
        nothing changed, unless the reply to the change was lost (``OutcomeUnknownError``, logged),
        when it may have.
        """
        try:
            item = self._backend.get(self._generation_key)
            if item is None or parse_counter(item) is None:
                self._backend.delete(self._generation_key)
                self._new_generation()
            else:
                self._backend.incr(self._generation_key, 1, None)
        except BackendError as exc:
            self._stats.server_error(exc, f"cache_clear of {self.name}")
            logger.warning("cache_clear of %s failed: %s", self.name, exc)
            return False
        return True

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
