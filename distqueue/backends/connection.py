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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import redis
import redis.exceptions

from ..errors import BackendConnectionError, OutcomeUnknownError
from .scripts import REPLY_WINDOW, NotSent

T = TypeVar("T")

BLOCK_SLICE = 5.0
"""The longest a single blocking command waits, in seconds; longer waits are several."""


@dataclass(frozen=True)
class RedisOptions:
    """Time limits for one Redis client, in seconds; each can be given in the URL's query
    (``redis://host/0?socket_timeout=2&retry_window=10``).

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
    """

    socket_timeout: float = 5.0
    connect_timeout: float = 2.0
    retry_window: float = 3.0
    outage_limit: float = 60.0

    def __post_init__(self) -> None:
        for field in fields(self):
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

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> RedisOptions:
        """Options from a URL's query parameters; ``ValueError`` naming any that is unknown or
        not a positive number."""
        known = {field.name for field in fields(cls)}
        values: dict[str, float] = {}
        for key, text in query.items():
            if key not in known:
                raise ValueError(
                    f"unknown parameter {key!r}; known: {', '.join(sorted(known))}, db"
                )
            try:
                values[key] = float(text)
            except ValueError:
                raise ValueError(f"{key} must be a number of seconds, not {text!r}") from None
        return cls(**values)


def make_clients(connection: Mapping[str, Any], options: RedisOptions) -> tuple[Any, Any]:
    """Two ``redis.Redis`` clients for one server: one for commands, one for blocking waits
    (whose replies may take a whole slice longer). redis-py retries nothing by itself."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    common = {
        **connection,
        "socket_connect_timeout": options.connect_timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    commands = redis.Redis(**common, socket_timeout=options.socket_timeout)
    waits = redis.Redis(**common, socket_timeout=options.socket_timeout + BLOCK_SLICE)
    return commands, waits


RETRYABLE: tuple[type[BaseException], ...] = (
    NotSent,
    redis.exceptions.ConnectionError,  # also LOADING after a restart (BusyLoadingError)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after a fail-over, until the client moves on
)

_REFUSED = (
    redis.exceptions.AuthenticationError,  # wrong or missing credentials: retrying cannot help
    redis.exceptions.AuthorizationError,
)

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


class Retrier:
    """Runs one call, retrying it after a connection failure within the limits of ``options``.

    ``describe`` names the call's subject for error messages (``"queue 'jobs'"``).
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
        first_failure: float | None = None
        first_sent: float | None = None
        backoff = _BACKOFF_FIRST
        while True:
            started = time.monotonic()
            try:
                return attempt()
            except RETRYABLE as exc:
                cause = exc.error if isinstance(exc, NotSent) else exc
                if isinstance(cause, _REFUSED):
                    raise cause from None
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                if not isinstance(exc, NotSent) and first_sent is None:
                    first_sent = started
                give_up = first_failure + self.options.retry_window
                if wait_until is None:
                    give_up = first_failure + self.options.outage_limit
                elif wait_until > give_up:
                    give_up = wait_until
                if first_sent is not None and changes:
                    # past this, the server may have forgotten the first attempt's reply
                    give_up = min(give_up, first_sent + REPLY_WINDOW / 2)
                if now + backoff >= give_up:
                    raise self._failure(what, changes and first_sent is not None, cause) from cause
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _failure(self, what: str, unknown: bool, exc: BaseException) -> BackendConnectionError:
        if unknown:
            return OutcomeUnknownError(
                f"Redis server for {self.describe} did not answer {what}, which may or may not "
                f"have taken effect: {exc}"
            )
        return BackendConnectionError(f"Redis server for {self.describe} is unreachable: {exc}")
