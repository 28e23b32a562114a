"""The one place that turns a cache or results URL into a key-value backend.

Accepted forms::

    memory://                                  in-process storage (one store per namespace)
    memcached://host[:port][,host[:port]...]   one or several memcached servers (port 11211
                                               by default; IPv6 hosts in brackets)

and every Redis URL that queues take (:mod:`distqueue.url`), with the same meaning::

    redis://[[user]:password@]host[:port][/db]       one server (also ``?db=N``)
    rediss://...                                     over TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]
    redis+cluster://host[:port][,host[:port]...]     a Redis Cluster (``rediss+cluster://``)
    redis+sentinel://host[:port][,...]/service[/db]  the master the sentinels name
                                                     (``rediss+sentinel://``;
                                                     ``?sentinel_username=``,
                                                     ``?sentinel_password=``)

Query parameters, in seconds::

    ?connect_timeout=S   to wait for a connection (the ``connect_timeout`` argument; 1 s)
    ?socket_timeout=S    to wait for each reply (the ``timeout`` argument; 3 s)
    ?retry_window=S      Redis only: how long a call that failed on a connection (refused,
                         reset, a fail-over under way) is retried (3 s, at most 30 s)
    ?outage_limit=S      Redis only: how long ``ResultStore.wait(timeout=None)`` rides out an
                         outage (60 s)

so that a queue's URL serves for its results store (but for its ``wait_replicas`` and
``wait_timeout``, which only queues take so far: :func:`distqueue.url.results_url_for` drops
them). A setting given both in the URL
and as an argument must agree. Anything else raises ``ValueError`` naming the URL, or the
parameters it does not know. Opening a Redis Cluster reads its layout at once, retried within
``retry_window``, and raises ``BackendConnectionError`` if no node answers.

Bounds
    Every call to a server that accepts connections and never answers ends after at most
    ``connect_timeout + timeout`` seconds (4 s by default) for each server it needs (a call on
    keys of several memcached servers asks them in turn): a timeout is never retried. On
    Redis, a connection refused or reset, a replica's ``READONLY`` or a Cluster's redirect is
    retried with back-off for at most ``retry_window`` seconds, which is what carries a call
    through a fail-over. ``ResultStore.wait`` on Redis blocks in slices of at most
    ``BLOCK_SLICE`` seconds on a connection of its own whose timeout leaves room for them, so
    it ends within its own timeout plus the same bound (and ``BLOCK_SLICE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..url import ANY_REDIS_SCHEMES, SENTINEL_SCHEMES
from .base import DEFAULT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, check_seconds

MEMCACHED_SCHEME = "memcached"

URL_SETTINGS = {"connect_timeout": "connect_timeout", "socket_timeout": "timeout"}
"""Query parameters of a memcached URL, and the argument each one stands for."""

REDIS_ONLY_SETTINGS = ("retry_window", "outage_limit")
REDIS_SETTINGS = {**URL_SETTINGS, **{name: name for name in REDIS_ONLY_SETTINGS}}
"""Query parameters of a Redis URL (as for queues), and the argument each one stands for."""

_SENTINEL_PARAMETERS = ("sentinel_username", "sentinel_password")


def _where(url: str) -> str:
    """A Redis URL without credentials or query, to name the server in messages."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _settings(
    url: str,
    query: str,
    names: Mapping[str, str] = URL_SETTINGS,
    allowed: tuple[str, ...] = (),
) -> dict[str, float]:
    """The timeouts a URL's query gives, by argument name; ``ValueError`` for a parameter
    that is neither a setting nor in ``allowed``, given twice, or not a number of seconds."""
    settings: dict[str, float] = {}
    seen: set[str] = set()
    unknown: list[str] = []
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"malformed query in cache URL {url!r}") from None
    for name, text in pairs:
        if name in seen:
            raise ValueError(f"{name!r} is given twice in cache URL {url!r}")
        seen.add(name)
        if name in allowed:
            continue
        if name not in names:
            unknown.append(name)
            continue
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(
                f"{name}={text!r} in cache URL {url!r} is not a number of seconds"
            ) from None
        try:
            settings[names[name]] = check_seconds(seconds, name)
        except ValueError as exc:
            raise ValueError(f"in cache URL {url!r}: {exc}") from None
    if unknown:
        known = ", ".join(sorted({*names, *allowed}))
        raise ValueError(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} in cache URL {url!r}: known are {known}"
        )
    return settings


def given_timeouts(connect_timeout: object, timeout: object) -> dict[str, float]:
    """The timeouts given as arguments (those not left at ``DEFAULT``), checked."""
    given: dict[str, float] = {}
    if connect_timeout is not DEFAULT:
        given["connect_timeout"] = check_seconds(connect_timeout, "connect_timeout")
    if timeout is not DEFAULT:
        given["timeout"] = check_seconds(timeout, "timeout")
    return given


def _timeouts(
    url: str, from_url: Mapping[str, float], given: Mapping[str, float]
) -> tuple[float, float]:
    """``(connect_timeout, timeout)``: from the URL or the arguments (which must then agree),
    else the defaults."""
    for name, seconds in from_url.items():
        if name in given and given[name] != seconds:
            raise ValueError(
                f"{name} is {given[name]:g} s as an argument but {seconds:g} s in cache URL "
                f"{url!r}: give it once"
            )
    merged = {**given, **from_url}
    return (
        merged.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        merged.get("timeout", DEFAULT_TIMEOUT),
    )


def open_backend(
    url: str,
    *,
    namespace: str,
    timeouts: Mapping[str, float],
    dead_retry: float,
    blocking: bool = False,
    asyncio: bool = False,
) -> Any:
    """The backend for ``url`` (a :class:`~.base.KVBackend`). ``timeouts``: the
    ``connect_timeout`` and ``timeout`` given as arguments (checked), if any. ``blocking``:
    the backend will make blocking calls (results on Redis), on a connection of their own
    whose timeout leaves room for them. ``asyncio``: the backend of :mod:`.aioredis`, on
    redis-py's asyncio clients, with the same methods awaited (Redis URLs only: any other is
    a ``ValueError``)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            f"malformed cache URL {url!r}: expected scheme://..., e.g. 'memcached://localhost:11211'"
        )
    if asyncio and scheme not in ANY_REDIS_SCHEMES:
        raise ValueError(f"no asyncio backend for {scheme}:// (Redis URLs only)")
    if scheme == "memory":
        if rest:  # no settings either: nothing waits for a server
            raise ValueError(f"malformed memory URL {url!r}: use 'memory://'")
        from .memory import MemoryBackend

        return MemoryBackend(namespace)
    if scheme == MEMCACHED_SCHEME:
        from .memcached import MemcachedBackend, parse_servers

        rest, _, query = rest.partition("?")
        connect_timeout, timeout = _timeouts(url, _settings(url, query), timeouts)
        servers_text, _, tail = rest.partition("/")
        if tail or "#" in servers_text or "@" in servers_text:
            raise ValueError(
                f"malformed memcached URL {url!r}: use 'memcached://host:port[,host:port...]'"
            )
        try:
            servers = parse_servers(servers_text)
        except ValueError as exc:
            raise ValueError(f"malformed memcached URL {url!r}: {exc}") from None
        return MemcachedBackend(
            servers, connect_timeout=connect_timeout, timeout=timeout, dead_retry=dead_retry
        )
    if scheme in ANY_REDIS_SCHEMES:
        from ..backends.connection import RedisOptions
        from ..url import make_async_redis_clients, make_redis_clients

        if "#" in url:
            raise ValueError(f"malformed Redis URL {url!r}: a fragment ('#') has no meaning here")
        allowed = ("db",) + (_SENTINEL_PARAMETERS if scheme in SENTINEL_SCHEMES else ())
        settings = _settings(url, urlsplit(url).query, REDIS_SETTINGS, allowed)
        connect_timeout, timeout = _timeouts(url, settings, timeouts)
        try:
            options = RedisOptions(
                socket_timeout=timeout,
                connect_timeout=connect_timeout,
                # no replica waits here; the field must only stay below the socket timeout
                wait_timeout=min(RedisOptions.wait_timeout, timeout / 2),
                retry_window=settings.get("retry_window", RedisOptions.retry_window),
                outage_limit=settings.get("outage_limit", RedisOptions.outage_limit),
            )
        except ValueError as exc:
            raise ValueError(f"in cache URL {url!r}: {exc}") from None
        if asyncio:
            from .aioredis import AsyncRedisBackend

            # (the second client, for blocking waits, is never used, and connects nothing)
            commands = make_async_redis_clients(url, options)[0]
            return AsyncRedisBackend(
                commands, name=f"Redis {_where(url)}", dead_retry=dead_retry, options=options
            )
        from .redis import RedisBackend

        commands, waits = make_redis_clients(url, options)
        if not blocking:
            waits.close()
            waits = None
        return RedisBackend(
            commands,
            name=f"Redis {_where(url)}",
            dead_retry=dead_retry,
            options=options,
            waits=waits,
        )
    raise ValueError(
        f"unknown scheme {scheme!r} in cache URL {url!r}: "
        "use memory://, memcached://, redis://, rediss://, unix://, redis+cluster:// or "
        "redis+sentinel:// (or their rediss+ forms)"
    )
