"""``Cache``: get/set/add/delete/incr/decr/touch on memcached, Redis or memory, and ``cached``."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, WrongTypeError
from ..serializers import Serializer, get_serializer
from .base import DEFAULT_DEAD_RETRY, check_seconds, check_ttl, logger
from .errors import OutcomeUnknownError
from .frames import COUNTER_MAX, Corrupt
from .keys import Keyspace
from .store import ValueStore
from .url import open_backend

if TYPE_CHECKING:
    from .decorator import CachedFunction, P, R

__all__ = ["DEFAULT", "DEFAULT_NAMESPACE", "Cache", "CacheStats", "cached"]

DEFAULT_NAMESPACE = "dq"

DEFAULT_LOCK_TTL = 30.0
"""Seconds a stampede lock lives, and the longest a caller waits for another's computation."""


class _Default(enum.Enum):
    DEFAULT = 0


DEFAULT = _Default.DEFAULT
"""The ``ttl`` that stands for the cache's ``default_ttl``."""

TTL = float | int | None | _Default


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


class Cache:
    """A cache on memcached, Redis or in memory, with one behaviour on all three.

    ``url``
        ``memcached://h1:11211,h2:11211`` (keys spread over the servers by pymemcache's
        rendezvous hashing), ``redis://host:6379/0`` (also ``rediss://``, ``unix://``) or
        ``memory://`` (this process only); see :mod:`distqueue.cache.url`.
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
        settable in the URL (``?connect_timeout=1&socket_timeout=3``). A server that accepts
        connections and never answers costs a call at most ``connect_timeout + timeout``
        seconds; see :mod:`distqueue.cache.url`.
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
    control characters). See :mod:`distqueue.cache.keys`.

    **A server that fails is never an exception here.** A read of its keys is a miss, a write
    to it returns ``False`` (or lists the keys in ``set_many``), ``incr``/``decr`` return
    ``None``; each failure is counted in :attr:`stats` (``server_errors``) and logged on the
    ``distqueue.cache`` logger (WARNING when a server goes down, DEBUG for each failed call).
    After a failure a server is not tried for ``dead_retry`` seconds. Errors in the caller's
    own data are raised: ``SerializationError`` for a value the serializer refuses,
    ``ValueTooLargeError``, ``TypeError`` for a key that is not ``str``/``bytes``,
    ``WrongTypeError`` for ``incr``/``decr`` on a value that is not a counter.

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
        connect_timeout: float | _Default = DEFAULT,
        timeout: float | _Default = DEFAULT,
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
        self._keys = Keyspace(namespace)
        self._backend = open_backend(
            url,
            namespace=namespace,
            timeouts=given_timeouts(connect_timeout, timeout),
            dead_retry=check_seconds(dead_retry, "dead_retry"),
        )
        self._store = ValueStore(
            self._backend,
            self._keys,
            self.serializer,
            chunking=bool(chunking),
            compress_min_size=compress_min_size,
        )
        self._stats_lock = threading.Lock()
        self._counts = dict.fromkeys(_STAT_NAMES, 0)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        with self._stats_lock:
            self._counts[name] += amount

    def _failed(self, error: BackendError, what: str) -> None:
        """Count and log a server failure that the caller will not see."""
        self._count("server_errors")
        logger.debug("cache %s: %s", what, error)

    def _corrupt(self, key: object, reason: str) -> None:
        self._count("corrupt_values")
        logger.warning("cache value under %r is unusable (%s); counted as a miss", key, reason)

    def _ttl(self, ttl: TTL) -> float | None:
        if ttl is DEFAULT:
            return self.default_ttl
        return check_ttl(ttl)

    @property
    def stats(self) -> CacheStats:
        """A snapshot of this object's counters; see :class:`CacheStats`."""
        with self._stats_lock:
            return CacheStats(**self._counts)

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
                self._count("misses")
                return default
            value = self._store.decode(item)
        except BackendError as exc:
            self._failed(exc, "get")
            self._count("misses")
            return default
        except Corrupt as exc:
            self._corrupt(key, str(exc))
            self._count("misses")
            return default
        self._count("hits")
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
            self._failed(failure.error, f"get_many ({len(failure.keys)} keys)")
        if corrupt:
            original = dict(zip(skeys, keys, strict=True))
            for skey, reason in corrupt:
                self._corrupt(original[skey], reason)
        found = {key: values[skey] for key, skey in zip(keys, skeys, strict=True) if skey in values}
        with self._stats_lock:
            self._counts["hits"] += len(found)
            self._counts["misses"] += len(keys) - len(found)
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
            self._failed(exc, "set")
            return False
        return True

    def set_many(self, values: Mapping[str | bytes, Any], ttl: TTL = DEFAULT) -> list[str | bytes]:
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
            self._failed(failure.error, f"set_many ({len(failure.keys)} keys)")
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
            self._failed(exc, "add")
            return False

    def delete(self, key: str | bytes) -> bool:
        """Remove the value under ``key`` (and the chunks of a large one); ``True`` if there
        was one. ``False`` (counted) if its server failed."""
        try:
            return self._store.delete(self._keys.value_key(key))
        except BackendError as exc:
            self._failed(exc, "delete")
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
            self._failed(exc, "touch")
            return False
        except Corrupt as exc:
            self._corrupt(key, str(exc))
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
            self._failed(exc, "incr" if up else "decr")
            raise
        except BackendError as exc:
            self._failed(exc, "incr" if up else "decr")
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
        :class:`~distqueue.cache.decorator.CachedFunction`.

        ``ttl``: seconds a result lives (default: the cache's ``default_ttl``). ``key``: a
        function of the call's arguments returning what identifies the call (needed when an
        argument, such as ``self``, cannot be part of a key). ``name``: the name in the keys
        (default: ``module.qualname``). ``lock_ttl``: seconds the stampede lock lives, which
        is also the longest a caller waits for another caller's computation.

        Decorating raises ``TypeError`` for a function that its ``module.qualname`` does not
        identify (a lambda, a function defined inside another, a bound method, a
        ``functools.partial``) unless ``name`` or ``key`` is given.
        """
        from .decorator import CachedFunction

        seconds = self._ttl(ttl)
        lock_seconds = check_seconds(lock_ttl, "lock_ttl")

        def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
            return CachedFunction(
                self, func, ttl=seconds, key=key, name=name, lock_ttl=lock_seconds
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


def given_timeouts(connect_timeout: object, timeout: object) -> dict[str, float]:
    """The timeouts given as arguments (not left at ``DEFAULT``), checked."""
    given: dict[str, float] = {}
    if connect_timeout is not DEFAULT:
        given["connect_timeout"] = check_seconds(connect_timeout, "connect_timeout")
    if timeout is not DEFAULT:
        given["timeout"] = check_seconds(timeout, "timeout")
    return given


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
