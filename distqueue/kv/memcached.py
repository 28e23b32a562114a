"""The memcached cache backend (``memcached://h1:11211,h2:11211``): one or several servers.

Servers and keys
    Each key belongs to one server, chosen by pymemcache's rendezvous hashing
    (:class:`pymemcache.client.rendezvous.RendezvousHash`, the hasher of pymemcache's
    ``HashClient``), with the server named ``"host:port"`` as ``HashClient`` names it: a key
    lands on the server a ``HashClient`` over the same list would pick for it. The list is
    fixed: a key never moves to another server, so every process agrees on where it lives and
    a server that comes back never serves a value that was overwritten elsewhere meanwhile.

A dead server
    A connection error or timeout marks the server down for ``dead_retry`` seconds
    (:class:`~distqueue.kv.base.ServerHealth`): calls for its keys raise
    ``BackendConnectionError`` at once, without waiting for a timeout, until the next try.
    Calls on several keys go on with the other servers and report the failed one's keys.
    What that means to the caller is decided above: a miss for the cache, an error for
    results. (``HashClient``'s own failover is not used: while a server is retried it returns
    default values without an error, so a failed ``add`` reads as "the key exists"; after a few
    failures it moves the server's keys to the others, separately in each process.)

Connections
    Each server has a stack of idle ``pymemcache.Client`` connections, taken for one call and
    put back after it (a failed one is closed instead), so any number of threads share the
    backend. Every connection has ``connect_timeout`` and ``timeout`` set, ``TCP_NODELAY``, and
    waits for the reply of every write (``noreply`` is never used).

TTLs
    Sent as whole seconds, rounded up; ``None`` is 0 (no expiry). memcached reads an expiry
    of more than 30 days as a Unix time, so a longer TTL is sent as ``now + ttl``, which
    assumes the clocks of client and server agree. memcached keeps that time in a signed 32-bit
    number, and reads a later one as a time in the past (the item would be stored already
    expired), so an expiry past ``LATEST_EXPIRY`` (2038-01-19 03:14:07 UTC) is clamped to it:
    such an item lives until then, as if evicted early.

Item size
    Read once from the servers (``stats settings``, ``item_size_max``), the smallest of those
    that answer; 1 MiB (memcached's default) while none has answered. The memory of the
    servers together (``maxbytes``, the largest that answered times the number of servers)
    is read with it: a chunk manifest claiming a larger value is a lie.

Counters
    ``incr``/``decr`` are memcached's own, not idempotent, and never sent twice: pymemcache
    does not re-send, and neither does this module. The connection is made before the
    command is sent, so that a failure to connect is a plain ``BackendConnectionError``
    (nothing changed); any failure after the command left (a timeout, a connection closed
    before the reply) raises ``OutcomeUnknownError``: the counter may or may not have changed.

Waiting (``wait_item``)
    memcached cannot notify, so a waiter polls the item: first after 1 ms, then doubling the
    pause up to ``POLL_MAX`` (50 ms), within the caller's timeout.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pymemcache.client.base import Client
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
)

from ..backends.base import Backoff, Deadline
from ..errors import BackendConnectionError, BackendError, OutcomeUnknownError, WrongTypeError
from .base import KEEP_TTL, Failure, KeepTTL, ServerHealth, logger

DEFAULT_ITEM_SIZE_LIMIT = 1024 * 1024
"""memcached's default ``item_size_max``, used until a server has told its own."""

POLL_FIRST = 0.001
POLL_MAX = 0.05
"""The longest pause, in seconds, between two reads of a waiter."""

MAX_IDLE = 64
"""Idle connections kept per server; more are closed when put back."""

LATEST_EXPIRY = 2**31 - 1
"""The latest expiry memcached can store, as a Unix time (2038-01-19 03:14:07 UTC)."""

_RELATIVE_TTL_LIMIT = 30 * 24 * 3600  # memcached reads a larger expiry as a Unix time

_COUNTER_TRIES = 10  # incr found no counter, add found one: another client raced us

# What pymemcache raises: socket errors and timeouts (OSError), its own errors, and ValueError
# for a reply line it cannot parse.
_CLIENT_ERRORS = (OSError, MemcacheError, ValueError)


def exptime(ttl: float | None) -> int:
    """memcached's expiry for a TTL in seconds."""
    if ttl is None:
        return 0
    seconds = math.ceil(ttl)
    if seconds <= _RELATIVE_TTL_LIMIT:
        return max(1, seconds)
    now = time.time()
    if now + _RELATIVE_TTL_LIMIT >= LATEST_EXPIRY:  # this clock is past what memcached counts
        return _RELATIVE_TTL_LIMIT
    return min(math.ceil(now + ttl), LATEST_EXPIRY)


def parse_servers(text: str) -> list[tuple[str, int]]:
    """``"h1:11211,[::1]:11212,h3"`` as ``[(host, port), ...]``; ``ValueError`` if malformed."""
    servers: list[tuple[str, int]] = []
    for part in text.split(","):
        part = part.strip()
        if part.startswith("["):
            host, sep, rest = part[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"malformed server {part!r}")
            port_text = rest[1:] if rest else "11211"
        else:
            host, _, port_text = part.partition(":")
            port_text = port_text or "11211"
        if not host:
            raise ValueError(f"malformed server {part!r}: no host")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"malformed server {part!r}: bad port")
        server = (host, int(port_text))
        if server in servers:
            raise ValueError(f"server {part!r} is listed twice")
        servers.append(server)
    return servers


class _Server:
    """One memcached server: its idle connections and its health."""

    def __init__(
        self, host: str, port: int, connect_timeout: float, timeout: float, dead_retry: float
    ) -> None:
        self.address = (host, port)
        self.node = f"{host}:{port}"  # HashClient's name for the server, used for hashing
        self.health = ServerHealth(f"memcached server {self.node}", dead_retry)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._idle: deque[Any] = deque()
        self.closed = False

    def acquire(self) -> Any:
        """A connection for one call; ``BackendConnectionError`` if the server is down."""
        self.health.check()
        try:
            return self._idle.pop()
        except IndexError:
            return Client(
                self.address,
                connect_timeout=self._connect_timeout,
                timeout=self._timeout,
                no_delay=True,
                default_noreply=False,
            )

    def release(self, client: Any) -> None:
        """Put back a connection after a successful call."""
        self.health.succeeded()
        if self.closed or len(self._idle) >= MAX_IDLE:
            client.close()
        else:
            self._idle.append(client)

    def error(self, client: Any, exc: Exception, key: bytes | None = None) -> BackendError:
        """Close a connection whose call failed; the distqueue exception to raise ``from exc``."""
        client.close()
        if isinstance(exc, (OSError, MemcacheUnexpectedCloseError)):
            self.health.failed(exc)
            self.close_idle()  # they lead to the same failed server
            return BackendConnectionError(f"{self.health.name} is unreachable: {exc}")
        if key is not None and isinstance(exc, MemcacheClientError) and "non-numeric" in str(exc):
            name = key.decode("ascii")
            return WrongTypeError(f"the value under {name!r} is not a counter", key=name)
        if isinstance(exc, MemcacheServerError):
            return BackendError(f"{self.health.name} refused a command: {exc}")
        logger.debug("%s: unexpected reply or error", self.health.name, exc_info=exc)
        return BackendError(f"{self.health.name} failed a command: {type(exc).__name__}: {exc}")

    def close_idle(self) -> None:
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return


class MemcachedBackend:
    """Items on one or several memcached servers; see
    :class:`~distqueue.kv.base.KVBackend` and the module docstring."""

    shared = True
    keeps_ttl = False

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        *,
        connect_timeout: float,
        timeout: float,
        dead_retry: float,
    ) -> None:
        if not servers:
            raise ValueError("at least one memcached server is needed")
        self._servers = [
            _Server(host, port, connect_timeout, timeout, dead_retry) for host, port in servers
        ]
        self._by_node = {server.node: server for server in self._servers}
        self._only = self._servers[0] if len(self._servers) == 1 else None
        hasher = RendezvousHash()
        for server in self._servers:
            hasher.add_node(server.node)
        # The server list never changes, so a key's server never does: remember the last few.
        self._node_of: Callable[[str], str] = functools.lru_cache(maxsize=8192)(hasher.get_node)
        self._item_size_limit: int | None = None
        self._memory_limit: int | None = None
        self._limit_lock = threading.Lock()

    @property
    def servers(self) -> list[str]:
        """``"host:port"`` of every server, in the order given."""
        return [server.node for server in self._servers]

    def server_of(self, key: bytes) -> str:
        """``"host:port"`` of the server that holds ``key`` (a storage key)."""
        return self._server_for(key).node

    def _server_for(self, key: bytes) -> _Server:
        only = self._only
        if only is not None:
            return only
        return self._by_node[self._node_of(key.decode("ascii"))]

    def _by_server(self, keys: Sequence[bytes]) -> dict[_Server, list[bytes]]:
        only = self._only
        if only is not None:
            return {only: list(keys)}
        groups: dict[_Server, list[bytes]] = {}
        for key in keys:
            groups.setdefault(self._server_for(key), []).append(key)
        return groups

    # -- the contract --------------------------------------------------------------------------

    def item_size_limit(self) -> int | None:
        limit = self._item_size_limit
        if limit is not None:
            return limit
        with self._limit_lock:
            if self._item_size_limit is None:
                limits = []
                memories = []
                for server in self._servers:
                    try:
                        client = server.acquire()
                    except BackendError:
                        continue
                    try:
                        settings = client.stats("settings")
                    except _CLIENT_ERRORS as exc:
                        server.error(client, exc)
                        continue
                    server.release(client)
                    if isinstance(settings.get(b"item_size_max"), int):
                        limits.append(settings[b"item_size_max"])
                    if isinstance(settings.get(b"maxbytes"), int):
                        memories.append(settings[b"maxbytes"])
                if not limits:
                    return DEFAULT_ITEM_SIZE_LIMIT  # asked again next time
                if memories:
                    self._memory_limit = max(memories) * len(self._servers)
                self._item_size_limit = min(limits)
            return self._item_size_limit

    def memory_limit(self) -> int | None:
        return self._memory_limit

    def get(self, key: bytes) -> bytes | None:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            item: bytes | None = client.get(key)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        return item

    def get_many(self, keys: Sequence[bytes]) -> tuple[dict[bytes, bytes], list[Failure]]:
        found: dict[bytes, bytes] = {}
        failures: list[Failure] = []
        if not keys:
            return found, failures
        only = self._only
        if only is not None:  # the common case, without regrouping or copying
            try:
                client = only.acquire()
            except BackendError as exc:
                return found, [Failure(only.node, list(keys), exc)]
            try:
                found = client.get_many(keys)
            except _CLIENT_ERRORS as exc:
                return {}, [Failure(only.node, list(keys), only.error(client, exc))]
            only.release(client)
            return found, failures
        for server, group in self._by_server(keys).items():
            try:
                client = server.acquire()
            except BackendError as exc:
                failures.append(Failure(server.node, group, exc))
                continue
            try:
                items = client.get_many(group)
            except _CLIENT_ERRORS as exc:
                failures.append(Failure(server.node, group, server.error(client, exc)))
                continue
            server.release(client)
            found.update(items)
        return found, failures

    def set(self, key: bytes, item: bytes, ttl: float | None) -> None:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            stored = client.set(key, item, exptime(ttl), noreply=False)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        if not stored:
            raise BackendError(f"{server.health.name} did not store {key.decode('ascii')!r}")

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> list[Failure]:
        failures: list[Failure] = []
        if not items:
            return failures
        expire = exptime(ttl)
        only = self._only
        groups = {only: list(items)} if only is not None else self._by_server(list(items))
        for server, group in groups.items():
            try:
                client = server.acquire()
            except BackendError as exc:
                failures.append(Failure(server.node, group, exc))
                continue
            try:
                batch = items if only is not None else {key: items[key] for key in group}
                not_stored = client.set_many(batch, expire, noreply=False)
            except _CLIENT_ERRORS as exc:
                failures.append(Failure(server.node, group, server.error(client, exc)))
                continue
            server.release(client)
            if not_stored:
                error = BackendError(f"{server.health.name} did not store {len(not_stored)} items")
                failures.append(Failure(server.node, list(not_stored), error))
        return failures

    def add(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            stored = client.add(key, item, exptime(ttl), noreply=False)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        return bool(stored)

    def replace(self, key: bytes, item: bytes, ttl: float | None) -> bool:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            stored = client.replace(key, item, exptime(ttl), noreply=False)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        return bool(stored)

    def gets(self, key: bytes) -> tuple[bytes | None, object | None]:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            item, unique = client.gets(key)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        return (None, None) if item is None else (item, unique)

    def cas(self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object) -> bool:
        if not isinstance(stamp, bytes):
            return False
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            if client.sock is None:  # connect first: a failure here changed nothing
                client._connect()
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        try:
            # memcached cannot tell an item's TTL: KEEP_TTL is never sent here (keeps_ttl)
            stored = client.cas(key, item, stamp, exptime(None if ttl is KEEP_TTL else ttl))
        except _CLIENT_ERRORS as exc:
            error = server.error(client, exc, key)
            if isinstance(error, BackendConnectionError):
                raise OutcomeUnknownError(
                    f"{server.health.name}: the reply to a cas of {key.decode('ascii')!r} was "
                    f"lost ({type(exc).__name__}: {exc}); the item may or may not have been "
                    "stored"
                ) from exc
            raise error from exc
        server.release(client)
        return bool(stored)

    def append(self, key: bytes, data: bytes, prepend: bool) -> bool | None:
        # memcached's own append cannot check that the item holds a bytes value (it would
        # corrupt any other), so the caller reads the value and uses cas.
        return None

    def delete(self, key: bytes) -> bool:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            deleted = client.delete(key, noreply=False)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        return bool(deleted)

    def delete_many(self, keys: Sequence[bytes]) -> list[Failure]:
        failures: list[Failure] = []
        for server, group in self._by_server(keys).items() if keys else ():
            try:
                client = server.acquire()
            except BackendError as exc:
                failures.append(Failure(server.node, group, exc))
                continue
            try:
                client.delete_many(group, noreply=False)
            except _CLIENT_ERRORS as exc:
                failures.append(Failure(server.node, group, server.error(client, exc)))
                continue
            server.release(client)
        return failures

    def touch(self, key: bytes, ttl: float | None) -> bool:
        server = self._only or self._server_for(key)
        client = server.acquire()
        try:
            touched = client.touch(key, exptime(ttl), noreply=False)
        except _CLIENT_ERRORS as exc:
            raise server.error(client, exc) from exc
        server.release(client)
        return bool(touched)

    def _count(self, incr: bool, key: bytes, delta: int, ttl: float | None) -> int:
        """incr/decr, creating a missing counter with add (and trying again if another client
        created it in between)."""
        server = self._only or self._server_for(key)
        start = str(delta if incr else 0).encode("ascii")
        for _ in range(_COUNTER_TRIES):
            client = server.acquire()
            try:
                if client.sock is None:  # connect first: a failure here changed nothing
                    client._connect()
            except _CLIENT_ERRORS as exc:
                raise server.error(client, exc, key) from exc
            try:
                value = client.incr(key, delta) if incr else client.decr(key, delta)
                if value is None and client.add(key, start, exptime(ttl), noreply=False):
                    value = int(start)
            except _CLIENT_ERRORS as exc:
                error = server.error(client, exc, key)
                if isinstance(error, BackendConnectionError):
                    raise OutcomeUnknownError(
                        f"{server.health.name}: the reply to "
                        f"{'incr' if incr else 'decr'} of {key.decode('ascii')!r} was lost "
                        f"({type(exc).__name__}: {exc}); the counter may or may not have changed"
                    ) from exc
                raise error from exc
            server.release(client)
            if value is not None:
                return int(value)
        raise BackendError(
            f"{server.health.name}: the counter {key.decode('ascii')!r} kept vanishing and "
            f"reappearing during {_COUNTER_TRIES} tries"
        )

    def incr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._count(True, key, delta, ttl)

    def decr(self, key: bytes, delta: int, ttl: float | None) -> int:
        return self._count(False, key, delta, ttl)

    def publish(self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes) -> None:
        self.set(key, item, ttl)  # waiters poll

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> list[Failure]:
        return self.set_many(items, ttl)  # waiters poll

    def wait_item(
        self,
        key: bytes,
        wake_key: bytes,
        timeout: float | None,
        waiting: Callable[[bytes | None], bool],
    ) -> bytes | None:
        deadline = Deadline(timeout)
        backoff = Backoff(POLL_FIRST, POLL_MAX)
        while True:
            item = self.get(key)
            if not waiting(item):
                return item
            pause = backoff()
            remaining = deadline.remaining()
            if remaining is not None:
                if remaining <= 0:
                    return item
                pause = min(pause, remaining)
            time.sleep(pause)

    def close(self) -> None:
        for server in self._servers:
            server.closed = True
            server.close_idle()
