"""``@cache.cached``: results cached by call, one computation per miss, no outage raised.

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
    ``POLL_MAX`` (50 ms), and

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
"""

from __future__ import annotations

import functools
import secrets
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ..errors import BackendError
from .base import logger
from .frames import Corrupt, parse_counter
from .keys import CallKeys, call_key, function_name, why_name_is_ambiguous
from .store import MISSING

if TYPE_CHECKING:
    from .cache import Cache

P = ParamSpec("P")
R = TypeVar("R")

POLL_FIRST = 0.005
POLL_MAX = 0.05
"""The longest pause, in seconds, between two looks of a caller waiting for another's result."""


class CachedFunction(Generic[P, R]):
    """A function whose results are cached in a :class:`~distqueue.cache.Cache`.

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
        self.cache = cache
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self.name = name if name is not None else function_name(func)
        self._key_func = key
        self._call_keys = CallKeys(self.name, func)
        self._store = cache._store
        self._backend = cache._store.backend
        self._keys = cache._store.keys
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
        try:
            generation, value, _ = self._lookup(entry_key)
        except BackendError as exc:
            return self._call_uncached(exc, args, kwargs)
        if value is not MISSING:
            self.cache._count("hits")
            return value  # type: ignore[no-any-return]
        self.cache._count("misses")
        lock_key = self._keys.key("l", entry_key)
        token = secrets.token_hex(16).encode("ascii")
        try:
            locked = self._backend.add(lock_key, token, self.lock_ttl)
        except BackendError as exc:
            return self._call_uncached(exc, args, kwargs)
        if locked:
            return self._compute_locked(entry_key, lock_key, token, args, kwargs)
        return self._wait(entry_key, generation, lock_key, token, args, kwargs)

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
            self.cache._corrupt(entry_key, str(exc))
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

    def _compute_locked(
        self,
        entry_key: bytes,
        lock_key: bytes,
        token: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """With the lock held: look again (the previous holder may have stored the entry and
        released the lock between our miss and our lock), then compute if still missing."""
        try:
            generation, value, _ = self._lookup(entry_key)
        except BackendError as exc:
            self._release(lock_key, token)
            return self._call_uncached(exc, args, kwargs)
        if value is not MISSING:
            self._release(lock_key, token)
            self.cache._count("stampede_waits")
            return value  # type: ignore[no-any-return]
        return self._compute(entry_key, generation, lock_key, token, args, kwargs)

    def _compute(
        self,
        entry_key: bytes,
        generation: int,
        lock_key: bytes | None,
        token: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """Run the function, store its result in ``generation``, release the lock if held."""
        try:
            value = self.__wrapped__(*args, **kwargs)
            body = self._store.encode([generation, value])
            try:
                self._store.write(entry_key, body, self.ttl)
            except BackendError as exc:
                self.cache._failed(exc, f"storing a result of {self.name}")
            return value
        finally:
            if lock_key is not None:
                self._release(lock_key, token)

    def _release(self, lock_key: bytes, token: bytes) -> None:
        # Only our own lock: if it expired meanwhile, another caller may hold a new one. (The
        # read and the delete are two commands; losing that race costs one more computation.)
        try:
            if self._backend.get(lock_key) == token:
                self._backend.delete(lock_key)
        except BackendError as exc:
            self.cache._failed(exc, f"releasing the lock of {self.name}")

    def _wait(
        self,
        entry_key: bytes,
        generation: int,
        lock_key: bytes,
        token: bytes,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """Wait for the lock holder's result; see the module docstring for the rules."""
        deadline = time.monotonic() + self.lock_ttl
        pause = POLL_FIRST
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.cache._count("stampede_timeouts")
                logger.info(
                    "waited %g s for another caller of %s; computing without the lock",
                    self.lock_ttl,
                    self.name,
                )
                return self._compute(entry_key, generation, None, token, args, kwargs)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, POLL_MAX)
            try:
                generation, value, locked = self._lookup(entry_key, lock_key)
                if value is not MISSING:
                    self.cache._count("stampede_waits")
                    return value  # type: ignore[no-any-return]
                if locked:
                    continue
                locked = self._backend.add(lock_key, token, self.lock_ttl)
            except BackendError as exc:
                return self._call_uncached(exc, args, kwargs)
            if locked:
                return self._compute_locked(entry_key, lock_key, token, args, kwargs)

    def _call_uncached(
        self, error: BackendError, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> R:
        self.cache._failed(error, f"cached call of {self.name}")
        self.cache._count("uncached_calls")
        return self.__wrapped__(*args, **kwargs)

    # -- forgetting ----------------------------------------------------------------------------

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of the call ``f(*args, **kwargs)``; ``True`` if there was
        one. ``False`` (counted) if its server failed."""
        try:
            return self._store.delete(self._entry_key(args, kwargs))
        except BackendError as exc:
            self.cache._failed(exc, f"invalidate of {self.name}")
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
            self.cache._failed(exc, f"cache_clear of {self.name}")
            logger.warning("cache_clear of %s failed: %s", self.name, exc)
            return False
        return True

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<cached function {self.name} on {self.cache!r}>"
