"""The decisions of a cached call, as steps with no I/O: hit, wait for another caller, compute.

:func:`plan` is the algorithm described in :mod:`distqueue.cache` ("Stampede protection") as a
generator. It yields the steps it needs performed: :data:`LOOKUP` (read the generation and the
entry), :data:`LOOKUP_WITH_LOCK` (the same and whether the lock is held), :data:`TAKE_LOCK`
(``add`` the lock) and :class:`Pause`; the driver sends back each step's reply, or throws the
``BackendError`` it raised into the generator. The generator's return value says what to do
next: :class:`Hit`, :class:`Compute` or :class:`Uncached`. The blocking
:class:`distqueue.cache.CachedFunction` and :class:`distqueue.aio.cache.CachedFunction` drive
the same plan, each with its own I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, Protocol

from .backends.base import Backoff
from .errors import BackendError
from .kv.base import logger
from .kv.values import MISSING

POLL_FIRST = 0.005
POLL_MAX = 0.05
"""The longest pause, in seconds, between two looks of a caller waiting for another's result."""


class Lookup(NamedTuple):
    """Read the generation and the entry (and, with ``lock``, whether the lock is held) in one
    request; reply ``(generation, value or MISSING, lock held)``."""

    lock: bool


class TakeLock(NamedTuple):
    """Try to take the call's lock (an ``add`` with the lock's TTL); reply ``True`` if taken."""


class Pause(NamedTuple):
    """Wait ``seconds``; reply ``None``."""

    seconds: float


LOOKUP = Lookup(lock=False)
LOOKUP_WITH_LOCK = Lookup(lock=True)
TAKE_LOCK = TakeLock()

Step = Lookup | TakeLock | Pause


class Hit(NamedTuple):
    """Return ``value``; release the lock first if ``locked`` (it was taken, then the value
    was found)."""

    value: Any
    locked: bool


class Compute(NamedTuple):
    """Run the function and store its value in ``generation``; then release the lock if
    ``locked`` (else the caller gave up waiting and computes without it)."""

    generation: int
    locked: bool


class Uncached(NamedTuple):
    """A server failed (``error``): run the function without the cache; release the lock first
    if ``locked``."""

    error: BackendError
    locked: bool


Decision = Hit | Compute | Uncached

Plan = Generator[Step, Any, Decision]


class Counters(Protocol):
    """The counters a plan updates (:class:`distqueue.cacheops.StatsRecorder`)."""

    def hit(self) -> None: ...
    def miss(self) -> None: ...
    def stampede_wait(self) -> None: ...
    def stampede_timeout(self) -> None: ...


def plan(
    stats: Counters, name: str, lock_ttl: float, clock: Callable[[], float] = time.monotonic
) -> Plan:
    """The steps of one cached call of the function ``name``; see the module docstring."""
    try:
        generation, value, _ = yield LOOKUP
    except BackendError as exc:
        return Uncached(exc, locked=False)
    if value is not MISSING:
        stats.hit()
        return Hit(value, locked=False)
    stats.miss()
    try:
        locked = yield TAKE_LOCK
    except BackendError as exc:
        return Uncached(exc, locked=False)
    if not locked:
        deadline = clock() + lock_ttl
        backoff = Backoff(POLL_FIRST, POLL_MAX)
        while not locked:
            remaining = deadline - clock()
            if remaining <= 0:
                stats.stampede_timeout()
                logger.info(
                    "waited %g s for another caller of %s; computing without the lock",
                    lock_ttl,
                    name,
                )
                return Compute(generation, locked=False)
            yield Pause(min(backoff(), remaining))
            try:
                generation, value, held = yield LOOKUP_WITH_LOCK
                if value is not MISSING:
                    stats.stampede_wait()
                    return Hit(value, locked=False)
                if not held:  # the holder raised, or died and its lock expired
                    locked = yield TAKE_LOCK
            except BackendError as exc:
                return Uncached(exc, locked=False)
    # With the lock held, look again: the previous holder may have stored the entry and let
    # go of the lock between our miss and our lock.
    try:
        generation, value, _ = yield LOOKUP
    except BackendError as exc:
        return Uncached(exc, locked=True)
    if value is not MISSING:
        stats.stampede_wait()
        return Hit(value, locked=True)
    return Compute(generation, locked=True)
