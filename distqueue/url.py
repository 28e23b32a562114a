"""The one place that turns a URL into a backend.

Accepted forms::

    None                                   $DISTQUEUE_URL when set, else the memory backend
    memory://                              in-process storage
    redis://[[user]:password@]host[:port][/db]
    rediss://...                           Redis over TLS
    unix:///path/to/redis.sock[?db=N]      Redis over a Unix socket

Anything else raises ``ValueError`` naming the URL.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .backends.base import Kind, QueueBackend
from .serializers import Serializer

ENV_VAR = "DISTQUEUE_URL"

REDIS_SCHEMES = ("redis", "rediss", "unix")

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a connection to the server."""

SOCKET_TIMEOUT = 15.0
"""Seconds to wait for a reply; larger than the longest single blocking command."""

RETRIES = 6
"""Attempts redis-py makes after a connection error, with exponential back-off (about 3 s)."""


def resolve_url(url: str | None) -> str:
    """The URL to use: ``url``, else ``$DISTQUEUE_URL``, else ``memory://``."""
    if url is None:
        url = os.environ.get(ENV_VAR) or "memory://"
    if not isinstance(url, str):
        raise TypeError(f"url must be a str or None, not {type(url).__name__}")
    return url


def scheme_of(url: str) -> str:
    """The scheme of ``url``, checked; ``ValueError`` naming the URL if it is not one we serve."""
    if "://" not in url:
        raise ValueError(
            f"malformed queue URL {url!r}: expected scheme://..., e.g. 'redis://localhost:6379/0'"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory" or scheme in REDIS_SCHEMES:
        return scheme
    raise ValueError(
        f"unknown scheme {scheme!r} in queue URL {url!r}: "
        "use memory://, redis://, rediss:// or unix://"
    )


def redis_connection_kwargs(url: str) -> dict[str, Any]:
    """Check a Redis URL and return the keyword arguments for ``redis.Redis``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    kwargs: dict[str, Any] = {}
    try:
        if scheme == "unix":
            path = unquote(parts.netloc + parts.path)
            if not path:
                raise ValueError("no socket path")
            kwargs["unix_socket_path"] = path
            db_text = query.get("db", ["0"])[0]
        else:
            if not parts.hostname:
                raise ValueError("no host")
            kwargs["host"] = parts.hostname
            kwargs["port"] = parts.port if parts.port is not None else 6379
            db_text = parts.path.lstrip("/") or query.get("db", ["0"])[0]
            if scheme == "rediss":
                kwargs["ssl"] = True
        kwargs["db"] = int(db_text)
        if kwargs["db"] < 0:
            raise ValueError("negative database number")
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL {url!r}: {exc}") from None
    if parts.username:
        kwargs["username"] = unquote(parts.username)
    if parts.password:
        kwargs["password"] = unquote(parts.password)
    return kwargs


def make_redis_client(url: str) -> Any:
    """A ``redis.Redis`` client for ``url`` with timeouts and a bounded retry always set."""
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    kwargs = redis_connection_kwargs(url)
    return redis.Redis(
        **kwargs,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), RETRIES),
        health_check_interval=30,
    )


def open_backend(
    url: str | None, name: str, kind: Kind, serializer: Serializer, client: Any = None
) -> QueueBackend:
    """The backend serving queue ``name`` of ``kind`` at ``url``, or through ``client``.

    ``client`` is a ready ``redis.Redis`` (or compatible, such as a Sentinel's
    ``master_for()``) that the caller keeps owning; ``url`` must then be ``None``.
    """
    if client is not None:
        if url is not None:
            raise ValueError("give either url or client, not both")
        from .backends.redis import RedisBackend

        return RedisBackend(client, name, kind, serializer, owns_client=False)
    url = resolve_url(url)
    scheme = scheme_of(url)
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError(f"malformed memory URL {url!r}: use 'memory://'")
        from .backends.memory import MemoryBackend

        return MemoryBackend(name, kind)
    from .backends.redis import RedisBackend

    return RedisBackend(make_redis_client(url), name, kind, serializer)
