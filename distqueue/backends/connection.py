"""How distqueue talks to a Redis server: time limits, and retrying a call that failed.

redis-py's own retries are turned off: they nest (connect, handshake, health check, command)
and re-send a command whose reply was lost, which ran it twice. Instead every call is retried
here, as a whole, for at most ``retry_window`` seconds after its first failure, and every
state-changing script carries a request id, so that running it twice changes nothing (see
:mod:`distqueue.backends.scripts`). A call that waits (``get``, ``put`` on a full queue,
``join``) keeps retrying for as long as its own timeout allows, or ``outage_limit`` seconds of
continuous failure when it has none.

The longest a call takes against a server that accepts connections and never answers is its own
timeout (if it waits) plus ``retry_window + connect_timeout + socket_timeout`` seconds.

Three ways to reach Redis, each as two clients (commands, and blocking waits), with redis-py's
blocking clients or, for :mod:`distqueue.aio`, its asyncio ones (the ``make_async_*`` twins of
each function, with the same settings):

* one server (:func:`make_clients`);
* a Redis Cluster (:func:`make_cluster_clients`): redis-py's ``RedisCluster``, retrying nothing
  by itself either. It still follows ``MOVED`` and ``ASK`` redirects itself, at most 16 per
  call: a redirected command was refused, not run, so sending it again is harmless. A
  connection failure, ``CLUSTERDOWN`` or ``TRYAGAIN`` reaches :class:`Retrier`, after the
  client re-read the cluster's layout, and the call is retried under the same request id;
* a master watched by Redis Sentinel (:func:`make_sentinel_clients`): every new connection asks
  the sentinels where the master is, and a connection that finds a replica (``READONLY``, as
  after a fail-over) is dropped, so the retry connects to the master the sentinels name now.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, TypeVar

import redis
import redis.cluster
import redis.exceptions
import redis.sentinel

from ..errors import BackendConnectionError, OutcomeUnknownError
from .base import Backoff
from .scripts import REPLY_WINDOW, NotSent, ReplicasBehind

T = TypeVar("T")

BLOCK_SLICE = 5.0
"""The longest a single blocking command waits, in seconds; longer waits are several."""

MIN_BLOCK = 0.001
"""The shortest wait worth sending: Redis blocks with millisecond resolution, and reads a
timeout of 0 as "forever", which must never be sent."""


@dataclass(frozen=True)
class RedisOptions:
    """Time limits for one Redis client, in seconds, and how many replicas must confirm a
    change; each can be given in the URL's query (``redis://host/0?socket_timeout=2``).

    ``socket_timeout``
        How long one command waits for its reply (a blocking wait: its own length plus this).
    ``connect_timeout``
        How long opening a connection (TCP, TLS, handshake) may take.
    ``retry_window``
        How long a failed call is retried, with back-off, before it raises
        ``BackendConnectionError`` (or ``OutcomeUnknownError`` when it may have run).
    ``outage_limit``
        How long a call that waits with no timeout (``get()``, ``join()``) rides out an outage
        before it raises ``BackendConnectionError``.
    ``wait_replicas``
        How many replicas must have a change before a call that made it returns (Redis's
        ``WAIT``, sent with the change); 0, the default, waits for none. Redis replicates
        asynchronously: a change the master acknowledged and then lost in a fail-over (it died
        before passing the change on) is gone, unless a replica confirmed it first. A call
        whose change too few replicas confirm within ``wait_timeout`` is retried, which changes
        nothing more and waits again, and in the end raises ``OutcomeUnknownError``.
    ``wait_timeout``
        How long one such wait for the replicas lasts (less than ``socket_timeout``).
    """

    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    retry_window: float = 3.0
    outage_limit: float = 60.0
    wait_replicas: int = 0
    wait_timeout: float = 1.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.wait_replicas, bool)
            or not isinstance(self.wait_replicas, int)
            or self.wait_replicas < 0
        ):
            raise ValueError(
                f"wait_replicas must be a whole number of replicas, not {self.wait_replicas!r}"
            )
        for field in fields(self):
            if field.name == "wait_replicas":
                continue
            value = getattr(self, field.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(
                    f"{field.name} must be a positive number of seconds, not {value!r}"
                )
        if self.retry_window > REPLY_WINDOW / 2:
            raise ValueError(
                f"retry_window must be at most {REPLY_WINDOW / 2:g} s (replies are remembered "
                f"for {REPLY_WINDOW:g} s), not {self.retry_window!r}"
            )
        if self.wait_replicas and self.wait_timeout >= self.socket_timeout:
            raise ValueError(
                f"wait_timeout ({self.wait_timeout!r} s) must be less than socket_timeout "
                f"({self.socket_timeout!r} s): the server answers a wait only when it ends"
            )

    @property
    def replica_wait(self) -> tuple[int, int]:
        """``(replicas, milliseconds)`` for Redis's ``WAIT``; ``(0, 0)``: no waiting."""
        if not self.wait_replicas:
            return (0, 0)
        return (self.wait_replicas, max(1, round(self.wait_timeout * 1000)))

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RedisOptions:
        """Options from a URL's query parameters; ``ValueError`` naming any that is unknown or
        not a positive number."""
        known = {field.name for field in fields(cls)}
        values: dict[str, Any] = {}
        for key, text in query.items():
            if key not in known:
                raise ValueError(
                    f"unknown parameter {key!r}; known: {', '.join(sorted(known))}, db"
                )
            if key == "wait_replicas":
                if not text.isdigit():
                    raise ValueError(f"wait_replicas must be a whole number, not {text!r}")
                values[key] = int(text)
                continue
            try:
                values[key] = float(text)
            except ValueError:
                raise ValueError(f"{key} must be a number of seconds, not {text!r}") from None
        return cls(**values)


class _Flavour(NamedTuple):
    """redis-py's classes of one kind of client: blocking, or asyncio."""

    redis: Any
    sentinel: Any
    cluster: Any
    cluster_node: Any
    retry: Any


def _blocking() -> _Flavour:
    from redis.retry import Retry

    return _Flavour(
        redis.Redis,
        redis.sentinel.Sentinel,
        redis.cluster.RedisCluster,
        redis.cluster.ClusterNode,
        Retry,
    )


def _asyncio() -> _Flavour:
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.retry
    import redis.asyncio.sentinel

    return _Flavour(
        redis.asyncio.Redis,
        redis.asyncio.sentinel.Sentinel,
        redis.asyncio.cluster.RedisCluster,
        redis.asyncio.cluster.ClusterNode,
        redis.asyncio.retry.Retry,
    )


def _no_retries(flavour: _Flavour) -> Any:
    from redis.backoff import NoBackoff

    return flavour.retry(NoBackoff(), 0)


def _common(connection: Mapping[str, Any], options: RedisOptions, flavour: _Flavour) -> Any:
    """What every client to a server is given: its connection, time limits, no retries of
    redis-py's own, no health checks (a dead connection shows on the next command)."""
    return {
        **connection,
        "socket_connect_timeout": options.connect_timeout,
        "socket_keepalive": True,
        "retry": _no_retries(flavour),
        "health_check_interval": 0,
    }


def _server_pair(
    connection: Mapping[str, Any], options: RedisOptions, flavour: _Flavour
) -> tuple[Any, Any]:
    common = _common(connection, options, flavour)
    commands = flavour.redis(**common, socket_timeout=options.socket_timeout)
    waits = flavour.redis(**common, socket_timeout=options.socket_timeout + BLOCK_SLICE)
    return commands, waits


def _cluster_builder(
    nodes: Sequence[tuple[str, int]],
    connection: Mapping[str, Any],
    options: RedisOptions,
    flavour: _Flavour,
) -> Callable[[float], Any]:
    def build(socket_timeout: float) -> Any:
        return flavour.cluster(
            startup_nodes=[flavour.cluster_node(host, port) for host, port in nodes],
            retry=_no_retries(flavour),
            # Serve the slots that are covered while others are not (a shard between the
            # death of its master and the promotion of its replica).
            require_full_coverage=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=options.connect_timeout,
            socket_keepalive=True,
            health_check_interval=0,
            **connection,
        )

    return build


def _sentinel_pair(
    sentinels: Sequence[tuple[str, int]],
    service: str,
    connection: Mapping[str, Any],
    sentinel_connection: Mapping[str, Any],
    options: RedisOptions,
    flavour: _Flavour,
) -> tuple[Any, Any]:
    sentinel = flavour.sentinel(
        list(sentinels),
        sentinel_kwargs={
            **sentinel_connection,
            "socket_connect_timeout": options.connect_timeout,
            "socket_timeout": options.connect_timeout,
            "retry": _no_retries(flavour),
        },
    )
    common = _common(connection, options, flavour)
    commands = sentinel.master_for(
        service, redis_class=flavour.redis, socket_timeout=options.socket_timeout, **common
    )
    waits = sentinel.master_for(
        service,
        redis_class=flavour.redis,
        socket_timeout=options.socket_timeout + BLOCK_SLICE,
        **common,
    )
    return commands, waits


def make_clients(connection: Mapping[str, Any], options: RedisOptions) -> tuple[Any, Any]:
    """Two ``redis.Redis`` clients for one server: one for commands, one for blocking waits
    (whose replies may take a whole slice longer). redis-py retries nothing by itself."""
    return _server_pair(connection, options, _blocking())


def make_cluster_clients(
    nodes: Sequence[tuple[str, int]], connection: Mapping[str, Any], options: RedisOptions
) -> tuple[Any, Any]:
    """Two ``RedisCluster`` clients for the cluster that ``nodes`` (some of its nodes) belong
    to; ``connection``: credentials and TLS for every node.

    A client reads the cluster's layout when it is made: that is retried within
    ``retry_window``, then ``BackendConnectionError``.
    """
    build = _cluster_builder(nodes, connection, options, _blocking())
    where = "Redis Cluster " + ",".join(f"{host}:{port}" for host, port in nodes)
    retrier = Retrier(options, where)
    commands = retrier.run(lambda: build(options.socket_timeout), what="its layout", changes=False)
    waits = retrier.run(
        lambda: build(options.socket_timeout + BLOCK_SLICE), what="its layout", changes=False
    )
    return commands, waits


def make_sentinel_clients(
    sentinels: Sequence[tuple[str, int]],
    service: str,
    connection: Mapping[str, Any],
    sentinel_connection: Mapping[str, Any],
    options: RedisOptions,
) -> tuple[Any, Any]:
    """Two ``redis.Redis`` clients for the master that ``sentinels`` know as ``service``;
    ``connection``: database, credentials and TLS for the master, ``sentinel_connection``:
    credentials and TLS for the sentinels. Nothing is contacted until the first command.

    A sentinel answers at once or not at all: each is given ``connect_timeout`` to do so.
    """
    return _sentinel_pair(sentinels, service, connection, sentinel_connection, options, _blocking())


def make_async_clients(connection: Mapping[str, Any], options: RedisOptions) -> tuple[Any, Any]:
    """As :func:`make_clients`, two ``redis.asyncio.Redis`` clients: commands, blocking waits."""
    return _server_pair(connection, options, _asyncio())


def make_async_cluster_clients(
    nodes: Sequence[tuple[str, int]], connection: Mapping[str, Any], options: RedisOptions
) -> tuple[Any, Any]:
    """As :func:`make_cluster_clients`, two ``redis.asyncio.cluster.RedisCluster`` clients;
    each reads the cluster's layout at its first command (retried by the caller's driver)."""
    build = _cluster_builder(nodes, connection, options, _asyncio())
    return build(options.socket_timeout), build(options.socket_timeout + BLOCK_SLICE)


def make_async_sentinel_clients(
    sentinels: Sequence[tuple[str, int]],
    service: str,
    connection: Mapping[str, Any],
    sentinel_connection: Mapping[str, Any],
    options: RedisOptions,
) -> tuple[Any, Any]:
    """As :func:`make_sentinel_clients`, two ``redis.asyncio.Redis`` clients for the master."""
    return _sentinel_pair(sentinels, service, connection, sentinel_connection, options, _asyncio())


RETRYABLE: tuple[type[BaseException], ...] = (
    NotSent,
    ReplicasBehind,  # ran; the retry waits for the replicas again
    redis.exceptions.ConnectionError,  # also LOADING after a restart (BusyLoadingError), and
    # no master known to the sentinels (MasterNotFoundError)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after a fail-over, until the client moves on
    # A Cluster changing: none of these ran the command.
    redis.exceptions.ClusterDownError,  # CLUSTERDOWN: a shard without a master, for now
    redis.exceptions.TryAgainError,  # TRYAGAIN: a slot half-way through a migration
    redis.exceptions.AskError,  # MOVED or ASK, when redis-py stopped following them
    redis.exceptions.ClusterError,  # redis-py followed redirects 16 times in vain
    redis.exceptions.RedisClusterException,  # no reachable node, or a slot not covered
)

_REFUSED = (
    redis.exceptions.AuthenticationError,  # wrong or missing credentials: retrying cannot help
    redis.exceptions.AuthorizationError,
    redis.exceptions.CrossSlotTransactionError,  # a mistake of ours, not a passing state
    redis.exceptions.InvalidPipelineStack,
)

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 0.25  # a fail-over ends at an unknown moment: notice it soon after


class Retrier:
    """Runs one call, retrying it after a connection failure within the limits of ``options``.

    ``describe`` names the call's subject for error messages (``"queue 'jobs'"``). The
    decisions are :class:`RetryBudget`'s; this class only sleeps between attempts.
    """

    def __init__(self, options: RedisOptions, describe: str) -> None:
        self.options = options
        self.describe = describe

    def run(
        self,
        attempt: Callable[[], T],
        *,
        what: str,
        changes: bool,
        wait_until: float | None = 0.0,
    ) -> T:
        """``attempt()`` until it succeeds; its non-connection errors propagate at once.

        ``wait_until``: for a call that waits, the monotonic time its timeout ends, or ``None``
        when it waits for ever (``0.0``: a call that does not wait). ``changes``: whether the
        call changes state, so that a failure after the command was sent leaves its outcome
        unknown. Raises ``BackendConnectionError``, or ``OutcomeUnknownError`` when it may have
        run.
        """
        started = time.monotonic()
        try:
            return attempt()
        except RETRYABLE as exc:
            return self.after_failure(
                attempt, exc, started, what=what, changes=changes, wait_until=wait_until
            )

    def after_failure(
        self,
        attempt: Callable[[], T],
        exc: BaseException,
        started: float,
        *,
        what: str,
        changes: bool,
        wait_until: float | None = 0.0,
    ) -> T:
        """As :meth:`run`, for a call whose first attempt, begun at ``started`` (monotonic),
        failed with ``exc`` (one of :data:`RETRYABLE`): for callers that make the first
        attempt themselves."""
        budget = RetryBudget(self, what, changes, wait_until)
        while True:
            time.sleep(budget.failed(exc, started))
            started = time.monotonic()
            try:
                return attempt()
            except RETRYABLE as failure:
                exc = failure

    def failure(self, what: str, unknown: bool, exc: BaseException) -> BackendConnectionError:
        """The error that ends a call that could not be completed."""
        if unknown:
            return OutcomeUnknownError(
                f"Redis server for {self.describe} did not answer {what}, which may or may not "
                f"have taken effect: {exc}"
            )
        return BackendConnectionError(f"Redis server for {self.describe} is unreachable: {exc}")


class RetryBudget:
    """What to do after each failed attempt of one call: pause, or give up (no I/O here, so
    that any driver, blocking or not, can follow it).

    :meth:`failed` returns the pause before the next attempt, or raises the error that ends
    the call: the refusal itself (wrong credentials), ``BackendConnectionError``, or
    ``OutcomeUnknownError`` when an attempt reached the server and may have run.
    """

    __slots__ = (
        "_backoff",
        "_changes",
        "_first_failure",
        "_first_sent",
        "_retrier",
        "_wait_until",
        "_what",
    )

    def __init__(
        self, retrier: Retrier, what: str, changes: bool, wait_until: float | None
    ) -> None:
        self._retrier = retrier
        self._what = what
        self._changes = changes
        self._wait_until = wait_until
        self._first_failure: float | None = None
        self._first_sent: float | None = None
        self._backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_MAX)

    def failed(self, exc: BaseException, started: float) -> float:
        """After an attempt begun at ``started`` (monotonic) failed with ``exc``, one of
        :data:`RETRYABLE`: seconds to pause before the next attempt."""
        cause = exc.error if isinstance(exc, NotSent) else exc
        if isinstance(cause, _REFUSED):
            raise cause from None
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
        if not isinstance(exc, NotSent) and self._first_sent is None:
            self._first_sent = started
        options = self._retrier.options
        give_up = self._first_failure + options.retry_window
        if self._wait_until is None:
            give_up = self._first_failure + options.outage_limit
        elif self._wait_until > give_up:
            give_up = self._wait_until
        sent = self._first_sent is not None
        if self._first_sent is not None and self._changes:
            # past this, the server may have forgotten the first attempt's reply
            give_up = min(give_up, self._first_sent + REPLY_WINDOW / 2)
        pause = self._backoff()
        if now + pause >= give_up:
            raise self._retrier.failure(self._what, self._changes and sent, cause) from cause
        return pause
