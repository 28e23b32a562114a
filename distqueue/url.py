"""The one place that turns a URL into a backend.

Accepted forms::

    None                                   $DISTQUEUE_URL when set, else the memory backend
    memory://                              in-process storage
    redis://[[user]:password@]host[:port][/db]
    rediss://...                           Redis over TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]   Redis over a Unix socket

A Redis URL's query may set the client's time limits, in seconds: ``socket_timeout``,
``connect_timeout``, ``retry_window``, ``outage_limit`` (see
:class:`distqueue.backends.connection.RedisOptions`). Anything else raises ``ValueError``
naming the URL.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .backends.base import Kind, QueueBackend
from .serializers import Serializer

ENV_VAR = "DISTQUEUE_URL"

REDIS_SCHEMES = ("redis", "rediss", "unix")


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


def _query(url: str, text: str) -> dict[str, str]:
    """A URL's query parameters; ``ValueError`` for one given twice or without a value."""
    found: dict[str, str] = {}
    for key, values in parse_qs(text, keep_blank_values=True, strict_parsing=False).items():
        if len(values) != 1 or not values[0]:
            raise ValueError(f"malformed Redis URL {url!r}: give {key!r} one value")
        found[key] = values[0]
    return found


def redis_connection_kwargs(url: str) -> dict[str, Any]:
    """Check a Redis URL's location and credentials and return them as keyword arguments for
    ``redis.Redis``. Query parameters other than ``db`` are left to the caller."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = _query(url, parts.query)
    kwargs: dict[str, Any] = {}
    try:
        if scheme == "unix":
            if parts.hostname:
                raise ValueError("a unix:// URL takes an absolute path: unix:///path/to/socket")
            path = unquote(parts.path)
            if not path:
                raise ValueError("no socket path")
            kwargs["unix_socket_path"] = path
            db_text = query.get("db", "0")
        else:
            if not parts.hostname:
                raise ValueError("no host")
            kwargs["host"] = parts.hostname
            kwargs["port"] = parts.port if parts.port is not None else 6379
            path_db = parts.path.lstrip("/")
            if path_db and "db" in query:
                raise ValueError("the database is given twice, in the path and as ?db=")
            db_text = path_db or query.get("db", "0")
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


def redis_options(url: str) -> Any:
    """The time limits a Redis URL's query sets (:class:`~.backends.connection.RedisOptions`);
    ``ValueError`` naming any parameter that is unknown or malformed."""
    from .backends.connection import RedisOptions

    query = _query(url, urlsplit(url).query)
    query.pop("db", None)
    try:
        return RedisOptions.from_query(query)
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL {url!r}: {exc}") from None


QUEUE_ONLY_PARAMETERS = ("retry_window", "outage_limit")
"""Query parameters of a queue URL that a results store on the same server does not take."""


def results_url_for(queue_url: str) -> str:
    """The URL of a results store kept on a queue's own server: the queue's URL without the
    parameters only queues take."""
    parts = urlsplit(queue_url)
    if not parts.query:
        return queue_url
    kept = [
        (key, value)
        for key, values in parse_qs(parts.query, keep_blank_values=True).items()
        if key not in QUEUE_ONLY_PARAMETERS
        for value in values
    ]
    base = queue_url.split("?", 1)[0]
    return f"{base}?{urlencode(kept)}" if kept else base


def make_redis_client(url: str) -> Any:
    """A ``redis.Redis`` client for ``url``, with its time limits, retrying nothing by itself."""
    from .backends.connection import make_clients

    commands, waits = make_clients(redis_connection_kwargs(url), redis_options(url))
    waits.close()
    return commands


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
    from .backends.connection import make_clients
    from .backends.redis import RedisBackend

    options = redis_options(url)
    commands, waits = make_clients(redis_connection_kwargs(url), options)
    return RedisBackend(commands, name, kind, serializer, waits=waits, options=options)
