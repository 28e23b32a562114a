"""The one place that turns a cache or results URL into a key-value backend.

Accepted forms::

    memory://                                  in-process storage (one store per namespace)
    memcached://host[:port][,host[:port]...]   one or several memcached servers (port 11211
                                               by default; IPv6 hosts in brackets)
    redis://[[user]:password@]host[:port][/db]
    rediss://...                               Redis over TLS
    unix:///path/to/redis.sock[?db=N]          Redis over a Unix socket

Query parameters (memcached and Redis URLs)::

    ?connect_timeout=S   seconds to wait for a connection (the ``connect_timeout`` argument)
    ?socket_timeout=S    seconds to wait for each reply (the ``timeout`` argument)

A setting given both in the URL and as an argument must agree. Anything else raises
``ValueError`` naming the URL, or the parameters it does not know.

Bounds
    Every call to a server that accepts connections and never answers ends after at most
    ``connect_timeout + timeout`` seconds (4 s by default) for each server it needs (a call on
    keys of several memcached servers asks them in turn), plus, on Redis, one immediate
    attempt on a fresh connection when a pooled one turns out closed (a restarted server):
    a connection refused or reset is tried once more, a timeout never is. ``ResultStore.wait``
    on Redis blocks in slices of at most ``BLOCK_SLICE`` seconds on a connection of its own
    whose timeout leaves room for them, so it ends within its own timeout plus the same bound
    (and ``BLOCK_SLICE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..url import REDIS_SCHEMES, redis_connection_kwargs
from .base import DEFAULT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, KVBackend, check_seconds

MEMCACHED_SCHEME = "memcached"

URL_SETTINGS = {"connect_timeout": "connect_timeout", "socket_timeout": "timeout"}
"""Query parameters of a cache URL, and the argument each one stands for."""


def _settings(url: str, query: str, allowed: tuple[str, ...] = ()) -> dict[str, float]:
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
        if name not in URL_SETTINGS:
            unknown.append(name)
            continue
        try:
            seconds = float(text)
        except ValueError:
            raise ValueError(
                f"{name}={text!r} in cache URL {url!r} is not a number of seconds"
            ) from None
        try:
            settings[URL_SETTINGS[name]] = check_seconds(seconds, name)
        except ValueError as exc:
            raise ValueError(f"in cache URL {url!r}: {exc}") from None
    if unknown:
        known = ", ".join(sorted({*URL_SETTINGS, *allowed}))
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
) -> KVBackend:
    """The backend for ``url``. ``timeouts``: the ``connect_timeout`` and ``timeout`` given as
    arguments (checked), if any. ``blocking``: the backend will make blocking calls (results
    on Redis), on a connection of their own whose timeout leaves room for them."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            f"malformed cache URL {url!r}: expected scheme://..., e.g. 'memcached://localhost:11211'"
        )
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
    if scheme in REDIS_SCHEMES:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from ..backends.connection import BLOCK_SLICE
        from .redis import RedisBackend

        parts = urlsplit(url)
        if "#" in url:
            raise ValueError(f"malformed Redis URL {url!r}: a fragment ('#') has no meaning here")
        settings = _settings(url, parts.query, allowed=("db",) if scheme == "unix" else ())
        connect_timeout, timeout = _timeouts(url, settings, timeouts)
        db_query = [(k, v) for k, v in parse_qsl(parts.query) if k == "db"]
        plain = urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in db_query)))
        kwargs = redis_connection_kwargs(plain)

        def client(socket_timeout: float) -> redis.Redis:
            return redis.Redis(
                **kwargs,
                socket_connect_timeout=connect_timeout,
                socket_timeout=socket_timeout,
                socket_keepalive=True,
                # One immediate retry on a fresh connection when a pooled one was closed or
                # reset (a restarted server), at the command only. A timeout is not retried:
                # a server that does not answer would only make the caller wait again.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
                health_check_interval=30,
            )

        where = kwargs.get("unix_socket_path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return RedisBackend(
            client(timeout),
            name=f"{where}/{kwargs['db']}",
            dead_retry=dead_retry,
            blocking_client=client(timeout + BLOCK_SLICE) if blocking else None,
        )
    raise ValueError(
        f"unknown scheme {scheme!r} in cache URL {url!r}: "
        "use memory://, memcached://, redis://, rediss:// or unix://"
    )
