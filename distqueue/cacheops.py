"""The cache's behaviour as operations with no I/O, shared by :class:`distqueue.Cache` and
:class:`distqueue.aio.Cache`.

Each method of :class:`CacheOps` (one per call of the cache) and of :class:`CallOps` (the
parts of a cached function's call) is a generator of backend calls (:mod:`distqueue.kv.steps`):
keys and namespace, value framing and chunking (:mod:`distqueue.kv.values`), statistics,
default TTLs, the rule that a failed server is a miss, cas tokens, counters, touching the
chunks of a large value. The blocking cache performs the calls on its backend with
:func:`~distqueue.kv.steps.drive`; the asyncio cache awaits them on Redis's asyncio backend
with :func:`~distqueue.kv.steps.adrive`, or drives them in a thread on the others. Arguments
are checked when the generator is made, before any call (so a ``TypeError`` or
``ValueError`` comes from the call itself, not from its first step).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from . import stampede
from .callkeys import CallKeys, call_key, function_name, why_name_is_ambiguous
from .errors import BackendError, OutcomeUnknownError, WrongTypeError
from .kv.base import DEFAULT, CasToken, Default, check_ttl, logger
from .kv.frames import COUNTER_MAX, Corrupt, parse_counter
from .kv.steps import KVOp, call
from .kv.values import MISSING, ValueSteps, open_value_steps
from .serializers import Serializer, get_serializer

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


class CacheOps:
    """The calls of :class:`distqueue.Cache`, as operations (see the module docstring); their
    docstrings are the cache's."""

    def __init__(self, values: ValueSteps, stats: StatsRecorder, default_ttl: float | None) -> None:
        self.values = values
        self.keys = values.keys
        self.stats = stats
        self.default_ttl = default_ttl

    def ttl(self, ttl: TTL) -> float | None:
        """``ttl`` in seconds (``DEFAULT``: ``default_ttl``), checked."""
        if ttl is DEFAULT:
            return self.default_ttl
        return check_ttl(ttl)

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str | bytes, default: Any) -> KVOp[Any]:
        skey = self.keys.value_key(key)
        return self._get(key, skey, default)

    def _get(self, key: str | bytes, skey: bytes, default: Any) -> KVOp[Any]:
        try:
            item: bytes | None = yield call("get", skey)
            if item is None:
                self.stats.miss()
                return default
            value = yield from self.values.decode(item)
        except BackendError as exc:
            self.stats.server_error(exc, "get")
            self.stats.miss()
            return default
        except Corrupt as exc:
            self.stats.corrupt(key, str(exc))
            self.stats.miss()
            return default
        self.stats.hit()
        return value

    def get_many(self, keys: Iterable[str | bytes]) -> KVOp[dict[str | bytes, Any]]:
        keys = list(keys)
        value_key = self.keys.value_key
        skeys = [value_key(key) for key in keys]
        return self._get_many(keys, skeys)

    def _get_many(
        self, keys: list[str | bytes], skeys: list[bytes]
    ) -> KVOp[dict[str | bytes, Any]]:
        if not keys:
            return {}
        values, failures, corrupt = yield from self.values.read_many(skeys)
        for failure in failures:
            self.stats.server_error(failure.error, f"get_many ({len(failure.keys)} keys)")
        if corrupt:
            original = dict(zip(skeys, keys, strict=True))
            for skey, reason in corrupt:
                self.stats.corrupt(original[skey], reason)
        found = {key: values[skey] for key, skey in zip(keys, skeys, strict=True) if skey in values}
        self.stats.looked_up(len(found), len(keys) - len(found))
        return found

    def gets(self, key: str | bytes, default: Any) -> KVOp[tuple[Any, CasToken | None]]:
        skey = self.keys.value_key(key)
        return self._gets(key, skey, default)

    def _gets(
        self, key: str | bytes, skey: bytes, default: Any
    ) -> KVOp[tuple[Any, CasToken | None]]:
        try:
            value, token = yield from self.values.gets(skey)
        except BackendError as exc:
            self.stats.server_error(exc, "gets")
            self.stats.miss()
            return default, None
        except Corrupt as exc:
            self.stats.corrupt(key, str(exc))
            self.stats.miss()
            return default, None
        if token is None:
            self.stats.miss()
            return default, None
        self.stats.hit()
        return value, token

    # -- writing -------------------------------------------------------------------------------

    def set(self, key: str | bytes, value: Any, ttl: TTL) -> KVOp[bool]:
        skey = self.keys.value_key(key)
        seconds = self.ttl(ttl)
        body = self.values.encode(value)
        return self._write("set", self.values.write(skey, body, seconds), True)

    def _write(self, what: str, operation: KVOp[Any], done: bool | None = None) -> KVOp[bool]:
        """``operation``'s result as a bool (``done`` when given), ``False`` if a server
        failed (counted)."""
        try:
            result = yield from operation
        except BackendError as exc:
            self.stats.server_error(exc, what)
            return False
        return bool(result) if done is None else done

    def set_many(
        self,
        values: Mapping[str, Any] | Mapping[bytes, Any] | Mapping[str | bytes, Any],
        ttl: TTL,
    ) -> KVOp[list[str | bytes]]:
        seconds = self.ttl(ttl)
        value_key = self.keys.value_key
        encode = self.values.encode
        bodies = {value_key(key): encode(value) for key, value in values.items()}
        return self._set_many(list(values), bodies, seconds)

    def _set_many(
        self, keys: list[Any], bodies: dict[bytes, bytes], seconds: float | None
    ) -> KVOp[list[str | bytes]]:
        not_stored, failures = yield from self.values.write_many(bodies, seconds)
        for failure in failures:
            self.stats.server_error(failure.error, f"set_many ({len(failure.keys)} keys)")
        if not not_stored:
            return []
        value_key = self.keys.value_key
        return [key for key in keys if value_key(key) in not_stored]

    def add(self, key: str | bytes, value: Any, ttl: TTL) -> KVOp[bool]:
        skey = self.keys.value_key(key)
        seconds = self.ttl(ttl)
        body = self.values.encode(value)
        return self._write("add", self.values.add(skey, body, seconds))

    def replace(self, key: str | bytes, value: Any, ttl: TTL) -> KVOp[bool]:
        skey = self.keys.value_key(key)
        seconds = self.ttl(ttl)
        body = self.values.encode(value)
        return self._write("replace", self.values.replace(skey, body, seconds))

    def add_bytes(self, key: str | bytes, data: bytes, prepend: bool) -> KVOp[bool]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        skey = self.keys.value_key(key)
        return self._add_bytes(key, skey, bytes(data), prepend)

    def _add_bytes(self, key: str | bytes, skey: bytes, data: bytes, prepend: bool) -> KVOp[bool]:
        what = "prepend" if prepend else "append"
        try:
            done: bool = yield from self.values.append(skey, data, prepend, self.default_ttl)
        except TypeError as exc:
            raise TypeError(f"{what} to {key!r}: {exc}") from None
        except OutcomeUnknownError as exc:
            self.stats.server_error(exc, what)
            raise
        except BackendError as exc:
            self.stats.server_error(exc, what)
            return False
        except Corrupt as exc:
            self.stats.corrupt(key, str(exc))
            return False
        return done

    def cas(self, key: str | bytes, value: Any, token: CasToken, ttl: TTL) -> KVOp[bool]:
        if not isinstance(token, CasToken):
            raise TypeError(f"token must be a CasToken from Cache.gets, not {type(token).__name__}")
        skey = self.keys.value_key(key)
        if token.key != skey:
            raise ValueError(f"the token was given by gets() for another key than {key!r}")
        seconds = self.ttl(ttl)
        body = self.values.encode(value)
        return self._cas(body, seconds, token)

    def _cas(self, body: bytes, seconds: float | None, token: CasToken) -> KVOp[bool]:
        try:
            stored: bool = yield from self.values.cas(body, seconds, token)
        except OutcomeUnknownError as exc:
            self.stats.server_error(exc, "cas")
            raise
        except BackendError as exc:
            self.stats.server_error(exc, "cas")
            return False
        return stored

    def delete(self, key: str | bytes) -> KVOp[bool]:
        return self._write("delete", self.values.delete(self.keys.value_key(key)))

    def touch(self, key: str | bytes, ttl: TTL) -> KVOp[bool]:
        skey = self.keys.value_key(key)
        seconds = self.ttl(ttl)
        return self._touch(key, skey, seconds)

    def _touch(self, key: str | bytes, skey: bytes, seconds: float | None) -> KVOp[bool]:
        try:
            item: bytes | None = yield call("get", skey)
            if item is None:
                return False
            if item[:1] == b"#":
                manifest = yield from self.values.manifest(item)
                for chunk_key in self.values.chunk_keys(manifest):
                    yield call("touch", chunk_key, seconds)
            touched: bool = yield call("touch", skey, seconds)
        except BackendError as exc:
            self.stats.server_error(exc, "touch")
            return False
        except Corrupt as exc:
            self.stats.corrupt(key, str(exc))
            return False
        return touched

    def add_to_counter(self, up: bool, key: str | bytes, delta: int, ttl: TTL) -> KVOp[int | None]:
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, not {type(delta).__name__}")
        if not 0 <= delta <= COUNTER_MAX:
            raise ValueError(f"delta must be between 0 and 2**63 - 1, not {delta}")
        skey = self.keys.value_key(key)
        seconds = self.ttl(ttl)
        return self._count(up, key, skey, delta, seconds)

    def _count(
        self, up: bool, key: str | bytes, skey: bytes, delta: int, seconds: float | None
    ) -> KVOp[int | None]:
        try:
            value: int = yield call("incr" if up else "decr", skey, delta, seconds)
        except WrongTypeError as exc:
            raise WrongTypeError(f"the value under {key!r} is not a counter", key=exc.key) from exc
        except OutcomeUnknownError as exc:
            self.stats.server_error(exc, "incr" if up else "decr")
            raise
        except BackendError as exc:
            self.stats.server_error(exc, "incr" if up else "decr")
            return None
        return value


class CallOps:
    """The parts of a cached function's call that touch the cache, as operations: its keys,
    the steps of :func:`distqueue.stampede.plan`, storing a result, releasing the lock,
    ``invalidate`` and ``cache_clear``. Shared by the blocking and asyncio cached functions
    (same keys, same entries)."""

    def __init__(
        self,
        ops: CacheOps,
        func: Callable[..., Any],
        *,
        name: str,
        key: Callable[..., Any] | None,
        ttl: float | None,
        lock_ttl: float,
    ) -> None:
        self.ops = ops
        self.name = name
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self._values = ops.values
        self._keys = ops.keys
        self.stats = ops.stats
        self._key_func = key
        self._call_keys = CallKeys(name, func)
        self._generation_key = self._keys.key("g", name)

    # -- keys ----------------------------------------------------------------------------------

    def entry_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The key of the entry of the call ``f(*args, **kwargs)``; ``TypeError`` for an
        argument that cannot be part of a key."""
        if self._key_func is not None:
            text = call_key(self.name, None, (self._key_func(*args, **kwargs),), {})
        else:
            text = self._call_keys(args, kwargs)
        return self._keys.key("f", text)

    def lock_key(self, entry_key: bytes) -> bytes:
        return self._keys.key("l", entry_key)

    @staticmethod
    def new_token() -> bytes:
        """What a caller stores in the lock it takes, to release its own lock only."""
        return secrets.token_hex(16).encode("ascii")

    # -- the steps of the plan -----------------------------------------------------------------

    def perform(
        self, step: stampede.Lookup | stampede.TakeLock, entry_key: bytes, token: bytes
    ) -> KVOp[Any]:
        """The reply of one step of :func:`distqueue.stampede.plan` (any but a
        :class:`~distqueue.stampede.Pause`)."""
        if isinstance(step, stampede.Lookup):
            return (
                yield from self._lookup(entry_key, self.lock_key(entry_key) if step.lock else None)
            )
        taken: bool = yield call("add", self.lock_key(entry_key), token, self.lock_ttl)
        return taken

    def _lookup(self, entry_key: bytes, lock_key: bytes | None) -> KVOp[tuple[int, Any, bool]]:
        """The current generation, the entry's value (``MISSING`` if it has none) and, when
        ``lock_key`` is given, whether the lock is held; all read in one request."""
        keys = [self._generation_key, entry_key]
        if lock_key is not None:
            keys.append(lock_key)
        found, failures = yield call("get_many", keys)
        if failures:
            raise failures[0].error
        locked = lock_key is not None and lock_key in found
        item = found.get(self._generation_key)
        generation = parse_counter(item) if item is not None else None
        if generation is None:
            generation = yield from self._new_generation()
        item = found.get(entry_key)
        if item is None:
            return generation, MISSING, locked
        try:
            entry = yield from self._values.decode(item)
        except Corrupt as exc:
            self.stats.corrupt(entry_key, str(exc))
            return generation, MISSING, locked
        if type(entry) is list and len(entry) == 2 and entry[0] == generation:
            return generation, entry[1], locked
        return generation, MISSING, locked

    def _new_generation(self) -> KVOp[int]:
        """Create the missing generation counter at a random number, and return it."""
        candidate = secrets.randbits(48) + 1
        if (yield call("add", self._generation_key, str(candidate).encode("ascii"), None)):
            return candidate
        # created by another caller meanwhile
        item: bytes | None = yield call("get", self._generation_key)
        current = parse_counter(item) if item is not None else None
        return candidate if current is None else current

    def store_result(self, entry_key: bytes, generation: int, value: Any) -> KVOp[None]:
        """Store ``value`` as the entry of ``generation``; a failed server is counted. Raises
        ``SerializationError`` or ``ValueTooLargeError`` (when made) for a value it cannot
        store."""
        body = self._values.encode([generation, value])
        return self._store(entry_key, body)

    def _store(self, entry_key: bytes, body: bytes) -> KVOp[None]:
        try:
            yield from self._values.write(entry_key, body, self.ttl)
        except BackendError as exc:
            self.stats.server_error(exc, f"storing a result of {self.name}")

    def release(self, entry_key: bytes, token: bytes) -> KVOp[None]:
        """Delete the call's lock if it is still this caller's (``token``)."""
        # Only our own lock: if it expired meanwhile, another caller may hold a new one. (The
        # read and the delete are two commands; losing that race costs one more computation.)
        lock_key = self.lock_key(entry_key)
        try:
            if (yield call("get", lock_key)) == token:
                yield call("delete", lock_key)
        except BackendError as exc:
            self.stats.server_error(exc, f"releasing the lock of {self.name}")

    def count_uncached(self, error: BackendError) -> None:
        self.stats.server_error(error, f"cached call of {self.name}")
        self.stats.uncached_call()

    # -- forgetting ----------------------------------------------------------------------------

    def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> KVOp[bool]:
        return self._invalidate(self.entry_key(args, kwargs))

    def _invalidate(self, entry_key: bytes) -> KVOp[bool]:
        try:
            deleted: bool = yield from self._values.delete(entry_key)
        except BackendError as exc:
            self.stats.server_error(exc, f"invalidate of {self.name}")
            return False
        return deleted

    def cache_clear(self) -> KVOp[bool]:
        try:
            item: bytes | None = yield call("get", self._generation_key)
            if item is None or parse_counter(item) is None:
                yield call("delete", self._generation_key)
                yield from self._new_generation()
            else:
                yield call("incr", self._generation_key, 1, None)
        except BackendError as exc:
            self.stats.server_error(exc, f"cache_clear of {self.name}")
            logger.warning("cache_clear of %s failed: %s", self.name, exc)
            return False
        return True


def call_ops(
    ops: CacheOps,
    func: Callable[..., Any],
    *,
    ttl: float | None,
    key: Callable[..., Any] | None,
    name: str | None,
    lock_ttl: float,
) -> CallOps:
    """The :class:`CallOps` of ``func`` cached in ``ops``'s cache; ``TypeError`` for a function
    that its ``module.qualname`` does not identify, unless ``name`` or ``key`` is given (see
    :class:`distqueue.cache.CachedFunction`)."""
    if key is None and name is None:
        why = why_name_is_ambiguous(func)
        if why is not None:
            raise TypeError(
                f"cannot cache {func!r} under its own name: {why}, so cached results of "
                "one could be returned for another. Pass name=... (a name that tells it "
                "apart, closed-over values included) or key=..."
            )
    return CallOps(
        ops,
        func,
        name=name if name is not None else function_name(func),
        key=key,
        ttl=ttl,
        lock_ttl=lock_ttl,
    )


def open_cache(
    url: str,
    *,
    namespace: str,
    default_ttl: float | None,
    serializer: Serializer | str | None,
    chunking: bool,
    compress_min_size: int | None,
    connect_timeout: object,
    timeout: object,
    dead_retry: object,
    asyncio: bool = False,
) -> tuple[CacheOps, Any]:
    """The operations of a cache with these settings (see :class:`distqueue.Cache`) and the
    backend they run on (with ``asyncio``: Redis's asyncio backend, Redis URLs only). Raises
    ``ValueError`` or ``TypeError`` for the first argument that is wrong."""
    if compress_min_size is not None and (
        isinstance(compress_min_size, bool)
        or not isinstance(compress_min_size, int)
        or compress_min_size < 0
    ):
        raise ValueError(
            f"compress_min_size must be an int >= 0 or None, not {compress_min_size!r}"
        )
    seconds = check_ttl(default_ttl, "default_ttl")
    values, backend = open_value_steps(
        url,
        namespace=namespace,
        serializer=get_serializer(serializer),
        chunking=chunking,
        compress_min_size=compress_min_size,
        connect_timeout=connect_timeout,
        timeout=timeout,
        dead_retry=dead_retry,
        asyncio=asyncio,
    )
    return CacheOps(values, StatsRecorder(), seconds), backend
