"""The one place that turns a URL into a backend (for queues) or a store (for deques).

Accepted forms::

    None                                   $DISTQUEUE_URL when set, else the memory backend
    memory://                              in-process storage
    redis://[[user]:password@]host[:port][/db]
    rediss://...                           Redis over TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=N]   Redis over a Unix socket
    redis+cluster://[[user]:password@]host[:port][,host[:port]...]
                                           a Redis Cluster, found through any of these nodes
    rediss+cluster://...                   a Redis Cluster over TLS
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
                                           the master that these sentinels (port 26379 by
                                           default) know as ``service``; the credentials are
                                           the master's, ``?sentinel_username=`` and
                                           ``?sentinel_password=`` the sentinels' own
    rediss+sentinel://...                  the same over TLS, to the sentinels and the master

A Redis URL's query may set the client's time limits, in seconds: ``socket_timeout``,
``connect_timeout``, ``retry_window``, ``outage_limit``, and how many replicas must confirm
each change, ``wait_replicas`` (within ``wait_timeout``; see
:class:`distqueue.backends.connection.RedisOptions`). Anything else raises ``ValueError``
naming the URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .backends.base import Kind, QueueBackend
from .serializers import Serializer

if TYPE_CHECKING:
    from .deques.base import DequeStore

ENV_VAR = "DISTQUEUE_URL"

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""One Redis server."""
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
ANY_REDIS_SCHEMES = REDIS_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES
"""Every way of reaching Redis that queues (and the Executor) take."""

_SENTINEL_PARAMETERS = ("sentinel_username", "sentinel_password")


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
    if scheme == "memory" or scheme in ANY_REDIS_SCHEMES:
        return scheme
    raise ValueError(
        f"unknown scheme {scheme!r} in queue URL {url!r}: use memory://, redis://, rediss://, "
        "unix://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
    )


def is_redis_url(url: str) -> bool:
    """Whether ``url`` (checked) reaches Redis: one server, a Cluster or a Sentinel's master."""
    return scheme_of(url) in ANY_REDIS_SCHEMES


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


def _hosts(url: str, netloc: str, default_port: int) -> list[tuple[str, int]]:
    """``host[:port],host[:port]...`` (after any credentials) as (host, port) pairs."""
    hosts: list[tuple[str, int]] = []
    for part in netloc.rpartition("@")[2].split(","):
        try:
            parsed = urlsplit(f"//{part}")
            host, port = parsed.hostname, parsed.port
        except ValueError as exc:
            raise ValueError(f"malformed Redis URL {url!r}: {exc} in {part!r}") from None
        if not host:
            raise ValueError(f"malformed Redis URL {url!r}: no host in {part!r}")
        hosts.append((host, port if port is not None else default_port))
    return hosts


def _credentials(netloc: str) -> dict[str, Any]:
    userinfo, at, _ = netloc.rpartition("@")
    if not at:
        return {}
    username, colon, password = userinfo.partition(":")
    found: dict[str, Any] = {}
    if username:
        found["username"] = unquote(username)
    if colon and password:
        found["password"] = unquote(password)
    return found


def cluster_connection(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """A ``redis+cluster://`` URL's nodes, and the credentials and TLS for every node."""
    parts = urlsplit(url)
    query = _query(url, parts.query)
    if parts.path not in ("", "/", "/0") or query.get("db", "0") != "0":
        raise ValueError(f"malformed Redis URL {url!r}: a Redis Cluster has database 0 only")
    nodes = _hosts(url, parts.netloc, 6379)
    connection = _credentials(parts.netloc)
    if parts.scheme.lower().startswith("rediss"):
        connection["ssl"] = True
    return nodes, connection


def sentinel_connection(
    url: str,
) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """A ``redis+sentinel://`` URL's sentinels, service name, the master's database,
    credentials and TLS, and the sentinels' credentials and TLS."""
    parts = urlsplit(url)
    query = _query(url, parts.query)
    sentinels = _hosts(url, parts.netloc, 26379)
    path = [unquote(piece) for piece in parts.path.strip("/").split("/")] if parts.path else []
    if not path or not path[0] or len(path) > 2:
        raise ValueError(
            f"malformed Redis URL {url!r}: give the service, as in "
            "redis+sentinel://host:26379/mymaster/0"
        )
    try:
        db = int(path[1]) if len(path) == 2 else int(query.get("db", "0"))
        if db < 0:
            raise ValueError("negative database number")
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL {url!r}: {exc}") from None
    if len(path) == 2 and "db" in query:
        raise ValueError(f"malformed Redis URL {url!r}: the database is given twice")
    master: dict[str, Any] = {"db": db, **_credentials(parts.netloc)}
    sentinel: dict[str, Any] = {}
    for key in _SENTINEL_PARAMETERS:
        if key in query:
            sentinel[key.removeprefix("sentinel_")] = query[key]
    if parts.scheme.lower().startswith("rediss"):
        master["ssl"] = True
        sentinel["ssl"] = True
    return sentinels, path[0], master, sentinel


def redis_options(url: str) -> Any:
    """The time limits a Redis URL's query sets (:class:`~.backends.connection.RedisOptions`);
    ``ValueError`` naming any parameter that is unknown or malformed."""
    from .backends.connection import RedisOptions

    query = _query(url, urlsplit(url).query)
    query.pop("db", None)
    if scheme_of(url) in SENTINEL_SCHEMES:
        for key in _SENTINEL_PARAMETERS:
            query.pop(key, None)
    try:
        return RedisOptions.from_query(query)
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL {url!r}: {exc}") from None


QUEUE_ONLY_PARAMETERS = ("wait_replicas", "wait_timeout")
"""Query parameters of a queue URL that a results store on the same server does not take."""


def results_url_for(queue_url: str) -> str:
    """The URL of a results store kept on a queue's own server: the queue's URL without the
    parameters only queues take (a results store takes the others, see
    :mod:`distqueue.kv.url`)."""
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


def make_redis_clients(url: str, options: Any = None) -> tuple[Any, Any]:
    """The two clients (commands, blocking waits) for a Redis URL of any form, with its time
    limits (``options``, or those of the URL's query), retrying nothing by themselves."""
    return _redis_clients(url, options, asyncio=False)


def make_async_redis_clients(url: str, options: Any = None) -> tuple[Any, Any]:
    """As :func:`make_redis_clients`, with redis-py's asyncio clients: the same URLs and the
    same query parameters."""
    return _redis_clients(url, options, asyncio=True)


def _redis_clients(url: str, options: Any, *, asyncio: bool) -> tuple[Any, Any]:
    from .backends import connection as c

    if options is None:
        options = redis_options(url)
    scheme = scheme_of(url)
    if scheme in CLUSTER_SCHEMES:
        nodes, kwargs = cluster_connection(url)
        make_cluster = c.make_async_cluster_clients if asyncio else c.make_cluster_clients
        return make_cluster(nodes, kwargs, options)
    if scheme in SENTINEL_SCHEMES:
        sentinels, service, master, sentinel = sentinel_connection(url)
        make_sentinel = c.make_async_sentinel_clients if asyncio else c.make_sentinel_clients
        return make_sentinel(sentinels, service, master, sentinel, options)
    make = c.make_async_clients if asyncio else c.make_clients
    return make(redis_connection_kwargs(url), options)


def make_redis_client(url: str) -> Any:
    """A client for ``url`` (a ``redis.Redis``, or a ``RedisCluster`` for a cluster URL), with
    its time limits, retrying nothing by itself."""
    commands, waits = make_redis_clients(url)
    waits.close()
    return commands


def open_backend(
    url: str | None,
    name: str,
    kind: Kind,
    serializer: Serializer,
    client: Any = None,
    settings: Mapping[str, Any] | None = None,
) -> QueueBackend:
    """The backend serving queue ``name`` of ``kind`` at ``url``, or through ``client``.

    ``client`` is a ready ``redis.Redis`` (or compatible, such as a Sentinel's
    ``master_for()``) that the caller keeps owning; ``url`` must then be ``None``. The queue
    is recorded, with ``settings``, in the server's registry (:mod:`distqueue.registry`).
    """
    from . import registry

    if client is not None:
        if url is not None:
            raise ValueError("give either url or client, not both")
        from .backends.redis import RedisBackend

        registry.note_queue(client, name, kind.value, settings)
        return RedisBackend(client, name, kind, serializer, owns_client=False)
    url = resolve_url(url)
    scheme = scheme_of(url)
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError(f"malformed memory URL {url!r}: use 'memory://'")
        from .backends.memory import MemoryBackend

        registry.note_memory_queue(name, kind.value, settings)
        return MemoryBackend(name, kind)
    from .backends.redis import RedisBackend

    options = redis_options(url)
    commands, waits = make_redis_clients(url, options)
    registry.note_queue(commands, name, kind.value, settings)
    return RedisBackend(commands, name, kind, serializer, waits=waits, options=options)


def open_deque_store(
    url: str | None, name: str | None, maxlen: int | None, serializer: Serializer
) -> tuple[DequeStore, str | None]:
    """The storage of deque ``name`` with ``maxlen`` at ``url``, and the deque's name (one is
    made up on Redis when ``name`` is ``None``; a memory deque without a name stays
    private)."""
    url = resolve_url(url)
    scheme = scheme_of(url)
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError(f"malformed memory URL {url!r}: use 'memory://'")
        from .deques.memory import MemoryDequeStore

        return MemoryDequeStore(name, maxlen), name
    from .deques.redis import Connections, RedisDequeStore

    if name is None:
        name = uuid.uuid4().hex
    options = redis_options(url)
    connections = Connections(*make_redis_clients(url, options), options)
    return RedisDequeStore(connections, name, maxlen, serializer), name


def open_async_backend(
    url: str | None, name: str, kind: Kind, serializer: Serializer, client: Any = None
) -> Any:
    """As :func:`open_backend`, for :mod:`distqueue.aio`: the same URLs (and the same queue
    for the same URL and name); ``client`` is a ready ``redis.asyncio.Redis`` (or
    ``RedisCluster``) that the caller keeps owning."""
    if client is not None:
        if url is not None:
            raise ValueError("give either url or client, not both")
        from .backends.redis.aio import AsyncRedisBackend

        return AsyncRedisBackend(client, name, kind, serializer, owns_client=False)
    url = resolve_url(url)
    scheme = scheme_of(url)
    if scheme == "memory":
        if url.lower() != "memory://":
            raise ValueError(f"malformed memory URL {url!r}: use 'memory://'")
        from .aio.memory import AsyncMemoryBackend

        return AsyncMemoryBackend(name, kind)
    from .backends.redis.aio import AsyncRedisBackend

    options = redis_options(url)
    commands, waits = make_async_redis_clients(url, options)
    return AsyncRedisBackend(commands, name, kind, serializer, waits=waits, options=options)
