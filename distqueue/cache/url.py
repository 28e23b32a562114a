"""The one place that turns a cache URL into a backend.

Accepted forms::

    memory://                                  in-process storage (one store per namespace)
    memcached://host[:port][,host[:port]...]   one or several memcached servers (port 11211
                                               by default; IPv6 hosts in brackets)
    redis://[[user]:password@]host[:port][/db]
    rediss://...                               Redis over TLS
    unix:///path/to/redis.sock[?db=N]          Redis over a Unix socket

Anything else raises ``ValueError`` naming the URL.
"""

from __future__ import annotations

from ..url import REDIS_SCHEMES, redis_connection_kwargs
from .base import CacheBackend

MEMCACHED_SCHEME = "memcached"


def open_backend(
    url: str,
    *,
    namespace: str,
    connect_timeout: float,
    timeout: float,
    dead_retry: float,
    blocking: bool = False,
) -> CacheBackend:
    """The backend for ``url``. ``blocking``: the client will make blocking calls (results on
    Redis), so its socket timeout leaves room for them."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            f"malformed cache URL {url!r}: expected scheme://..., e.g. 'memcached://localhost:11211'"
        )
    if scheme == "memory":
        if rest:
            raise ValueError(f"malformed memory URL {url!r}: use 'memory://'")
        from .memory import MemoryBackend

        return MemoryBackend(namespace)
    if scheme == MEMCACHED_SCHEME:
        from .memcached import MemcachedBackend, parse_servers

        servers_text, _, tail = rest.partition("/")
        if tail or "?" in servers_text or "#" in servers_text or "@" in servers_text:
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

        from .redis import BLOCK_SLICE, RedisBackend

        kwargs = redis_connection_kwargs(url)
        client = redis.Redis(
            **kwargs,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout + BLOCK_SLICE if blocking else timeout,
            socket_keepalive=True,
            # One immediate retry on a fresh connection: a pooled connection may have been
            # closed by a server restart. More would only delay the miss.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        where = kwargs.get("unix_socket_path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return RedisBackend(client, name=f"{where}/{kwargs['db']}", dead_retry=dead_retry)
    raise ValueError(
        f"unknown scheme {scheme!r} in cache URL {url!r}: "
        "use memory://, memcached://, redis://, rediss:// or unix://"
    )
