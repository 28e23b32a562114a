"""Caching and task results on memcached, Redis or memory.

::

    cache = Cache("memcached://10.0.0.1:11211,10.0.0.2:11211", namespace="app")
    cache.set("user:42", {"name": "Ada"}, ttl=60)
    cache.get("user:42")

    @cache.cached(ttl=300)
    def report(day: datetime.date) -> dict: ...

    results = ResultStore("redis://localhost:6379/0", ttl=3600)

Modules, one job each:

``cache``       :class:`Cache`, :class:`CacheStats`, :func:`cached`: the cache's contract and its
                failure rule (a failed server is a miss, never an exception)
``decorator``   :class:`CachedFunction`: keys per call, generations, stampede lock, outage
``results``     :class:`ResultStore`, :class:`Outcome`: results for the Executor (a failed
                server is an error)
``store``       serializing, compressing and chunking values over a backend
``frames``      the bytes stored for a value, chunk manifests
``keys``        storage keys every server accepts; canonical keys of function calls
``url``         the URL forms, and the backend for each
``base``        the backend contract (bytes in, bytes out), TTL checks, server health
``memory``, ``redis``, ``memcached``   the backends
``errors``      :class:`OutcomeUnknownError`, :class:`ValueTooLargeError`, :class:`ResultMissing`,
                :class:`ResultTimeout`, :class:`TaskFailed`
"""

from __future__ import annotations

from .cache import DEFAULT, Cache, CacheStats, cached
from .decorator import CachedFunction
from .errors import (
    OutcomeUnknownError,
    ResultMissing,
    ResultTimeout,
    TaskFailed,
    ValueTooLargeError,
)
from .results import Outcome, ResultStore

__all__ = [
    "DEFAULT",
    "Cache",
    "CacheStats",
    "CachedFunction",
    "Outcome",
    "OutcomeUnknownError",
    "ResultMissing",
    "ResultStore",
    "ResultTimeout",
    "TaskFailed",
    "ValueTooLargeError",
    "cached",
]
