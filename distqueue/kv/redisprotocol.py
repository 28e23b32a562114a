"""The Redis cache backend's behaviour, with no I/O: which commands each call sends, what their
replies mean, and what a failure means. Performed by :mod:`.redis` (blocking) and
:mod:`.aioredis` (asyncio); see :mod:`.redis` for the behaviour itself.

Each operation of :class:`RedisKVProtocol` is a generator that yields *steps* and is sent each
step's reply: :class:`Commands` (one command, or several in one round trip, in a ``MULTI``
when ``transaction``) and :class:`RunScript` (a retry-safe ``kv_*.lua`` script under a
request id of its own). Its return value is the call's result. A driver performs each step
through an :class:`Attempt`, which decides what every failure of it means (retry after a pause,
or the distqueue error that ends the call); the driver only sleeps, and throws that error into
the operation, which turns it into a :class:`~.base.Failure` on calls on several keys.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import math
from collections.abc import Generator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import redis.crc
import redis.exceptions

from ..backends.connection import RETRYABLE, Retrier, RetryBudget
from ..backends.scripts import NotSent, RequestIds
from ..errors import BackendConnectionError, BackendError, OutcomeUnknownError, WrongTypeError
from .base import KEEP_TTL, Failure, KeepTTL, ServerHealth

T = TypeVar("T")

ITEM_SIZE_LIMIT = 512 * 1024 * 1024
"""The largest Redis string (``proto-max-bulk-len``'s default)."""

MAX_TTL_MS = 10**15
"""The longest TTL sent to Redis, in milliseconds (about 31,700 years); a longer one is clamped
to it (Redis refuses an expiry that overflows its clock)."""

REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
"""What redis-py raises, blocking or asyncio."""


class Commands(NamedTuple):
    """Send ``commands`` (each a command name and its arguments) in one round trip; with
    ``transaction``, in one ``MULTI``. The reply: the command's for a single command outside a
    transaction, else the list of their replies (each idempotent: sending them twice changes
    nothing more). ``key``: the key an error names."""

    commands: tuple[tuple[Any, ...], ...]
    what: str
    transaction: bool = False
    key: bytes | None = None


class RunScript(NamedTuple):
    """Run the retry-safe script ``file`` (``distqueue/backends/lua``) on the one key ``key``,
    with ``args`` (its two reply keys first). The reply: the script's. Sent again after a
    lost reply, under the same request id, it returns the first reply and changes nothing."""

    file: str
    key: str
    args: tuple[Any, ...]
    what: str


Step = Commands | RunScript
Operation = Generator[Step, Any, T]


def _hashed_part(text: str) -> str:
    """The part of a key that Redis Cluster hashes: the text between the first ``{`` and the
    first ``}`` after it when that is not empty, else the whole key."""
    start = text.find("{")
    if start != -1:
        end = text.find("}", start + 1)
        if end > start + 1:
            return text[start + 1 : end]
    return text


@functools.cache
def _tags_by_slot() -> tuple[str, ...]:
    """For every Cluster slot, a short text that hashes to it (built once, when a key needs
    it: some 170,000 CRCs)."""
    tags: list[str | None] = [None] * 16384
    missing = len(tags)
    number = 0
    while missing:
        tag = f"{number:x}"
        slot = binascii.crc_hqx(tag.encode("ascii"), 0) % 16384
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        number += 1
    return tuple(tag or "" for tag in tags)


def request_key(key: bytes, request: str) -> str:
    """A key for one request's reply in the same Redis Cluster slot as ``key``.

    A key with a hash tag keeps it (the reply key starts with the key). Any other is hashed
    whole, so it becomes the tag, unless it holds a ``}`` (it could not be a tag then): the tag
    is then a short text of the same slot.
    """
    text = key.decode("ascii")
    if _hashed_part(text) is not text:
        return f"{text}:req:{request}"
    if "}" not in text:
        return f"{{{text}}}:req:{request}"
    slot = binascii.crc_hqx(key, 0) % 16384
    return f"{{{_tags_by_slot()[slot]}}}:req:{request}"


def ms(ttl: float) -> int:
    """A TTL in whole milliseconds, at least 1, at most :data:`MAX_TTL_MS`."""
    return max(1, min(math.ceil(ttl * 1000), MAX_TTL_MS))


def item_stamp(item: bytes) -> str:
    """What a compare-and-set token holds on Redis: the SHA-1 of the item read, as
    ``kv_cas.lua`` computes it on the server."""
    return hashlib.sha1(item).hexdigest()


def _set(key: bytes, item: bytes, px: int | None, *flags: str) -> tuple[Any, ...]:
    return ("SET", key, item, *(() if px is None else ("PX", px)), *flags)


def _px(ttl: float | None) -> int | None:
    return None if ttl is None else ms(ttl)


class Attempt:
    """What the failures of one step mean, attempt after attempt (see :mod:`.redis`): a
    timeout ends the call at once (a silent server would only make the caller wait again); a
    connection failure, a replica's ``READONLY`` or a Cluster changing is retried after the
    pause :meth:`failed` returns, within ``retry_window``; a refusal is ``BackendError``
    (``WrongTypeError`` for a counter command on another value).

    Made by :meth:`RedisKVProtocol.attempt`, which raises ``BackendConnectionError`` at once
    while the server counts as down (unless the step waits).
    """

    __slots__ = ("_budget", "_changes", "_key", "_kv", "_sent", "_wait_until", "_what")

    def __init__(
        self,
        kv: RedisKVProtocol,
        what: str,
        changes: bool,
        key: bytes | None,
        wait_until: float | None,
    ) -> None:
        self._kv = kv
        self._what = what
        self._changes = changes
        self._key = key
        self._wait_until = wait_until
        self._sent = False
        self._budget: RetryBudget | None = None

    def failed(self, exc: Exception, started: float) -> float:
        """After an attempt begun at ``started`` (monotonic) failed with ``exc``: seconds to
        pause before the next one; or raise the error that ends the call (``exc`` itself when
        it is not redis-py's)."""
        health = self._kv.health
        timed_out = isinstance(exc, redis.exceptions.TimeoutError)
        if isinstance(exc, NotSent) and isinstance(exc.error, redis.exceptions.TimeoutError):
            timed_out, sent = True, False
        else:
            sent = timed_out
        if timed_out:
            cause = exc.error if isinstance(exc, NotSent) else exc
            health.failed(cause)
            if self._changes and (self._sent or sent):
                raise OutcomeUnknownError(
                    f"{health.name} did not answer {self._what}, which may or may not have "
                    f"taken effect: {cause}"
                ) from cause
            raise BackendConnectionError(f"{health.name} is unreachable: {cause}") from cause
        if isinstance(exc, RETRYABLE):
            if isinstance(exc, redis.exceptions.ConnectionError):
                self._sent = True  # maybe: a connection that failed after the command left
            if self._budget is None:
                self._budget = RetryBudget(
                    self._kv.retrier, self._what, self._changes, self._wait_until
                )
            try:
                return self._budget.failed(exc, started)
            except BackendConnectionError as failure:  # OutcomeUnknownError too
                health.failed(failure)
                raise
            except REDIS_ERRORS as refused:  # wrong credentials: never retried
                raise self._kv.error(refused, self._key) from refused
        if isinstance(exc, REDIS_ERRORS):
            raise self._kv.error(exc, self._key) from exc
        raise exc

    def succeeded(self) -> None:
        self._kv.health.succeeded()


class RedisKVProtocol:
    """The calls of :class:`~.base.KVBackend` but ``wait_item``, as generators of steps, for
    one server, Cluster (``cluster``: calls on several keys go per slot) or Sentinel's master;
    ``retrier`` carries the time limits, ``health`` the server's state."""

    def __init__(self, health: ServerHealth, retrier: Retrier, *, cluster: bool) -> None:
        self.health = health
        self.retrier = retrier
        self.cluster = cluster
        self._request_id = RequestIds()

    # -- failures ------------------------------------------------------------------------------

    def attempt(self, step: Step, wait_until: float | None = 0.0) -> Attempt:
        """The failure policy of one step. ``wait_until``: as for
        :meth:`~distqueue.backends.connection.Retrier.run`; a step of a call that waits is
        tried even while the server counts as down, and rides out an outage within its own
        time. Raises ``BackendConnectionError`` for any other while the server is down."""
        if wait_until == 0.0:
            self.health.check()
        if type(step) is RunScript:
            return Attempt(self, step.what, True, step.key.encode("ascii"), wait_until)
        assert type(step) is Commands
        return Attempt(self, step.what, False, step.key, wait_until)

    def error(self, exc: BaseException, key: bytes | None = None) -> BackendError:
        """The distqueue exception for an error of redis-py that is not a connection failure
        (raise it ``from exc``)."""
        text = str(exc)
        if key is not None and ("NOTCOUNTER" in text or "WRONGTYPE" in text):
            name = key.decode("ascii")
            return WrongTypeError(f"the value under {name!r} is not a counter", key=name)
        return BackendError(f"{self.health.name} refused a command: {exc}")

    # -- building steps ------------------------------------------------------------------------

    def _script(self, file: str, key: bytes, *args: Any, what: str) -> Operation[Any]:
        """Run the retry-safe script ``file`` on ``key`` under a fresh request id."""
        skey = key.decode("ascii")
        reply_key = request_key(key, self._request_id())
        # The wrapper first deletes a reply its client has received; a cache call has none to
        # name (its earlier calls were on other keys, in other slots), so its own reply key
        # stands in: nothing is stored there before the script has run.
        reply = yield RunScript(file, skey, (reply_key, reply_key, *args), f"{what} of {skey!r}")
        return reply

    def _by_slot(self, keys: Sequence[bytes]) -> list[list[bytes]]:
        """``keys`` in groups that one command may name: all of them on one server, one group
        per slot on a Cluster."""
        if not self.cluster:
            return [list(keys)]
        groups: dict[int, list[bytes]] = {}
        for key in keys:
            groups.setdefault(redis.crc.key_slot(key), []).append(key)
        return list(groups.values())

    def _batch(self, keys: Sequence[bytes], step: Commands) -> Operation[tuple[Any, list[Failure]]]:
        """A step on several keys: its reply, or a failure for all of them."""
        try:
            reply = yield step
        except BackendError as exc:
            return None, [Failure(self.health.name, list(keys), exc)]
        return reply, []

    # -- the contract --------------------------------------------------------------------------

    def get(self, key: bytes) -> Operation[bytes | None]:
        item: bytes | None = yield Commands((("GET", key),), "a read", key=key)
        return item

    def get_many(
        self, keys: Sequence[bytes]
    ) -> Operation[tuple[dict[bytes, bytes], list[Failure]]]:
        if not keys:
            return {}, []
        groups = self._by_slot(keys)
        commands = tuple(("MGET", *group) for group in groups)
        reply, failures = yield from self._batch(keys, Commands(commands, "a read"))
        if reply is None:
            return {}, failures
        replies = [reply] if len(commands) == 1 else reply
        found: dict[bytes, bytes] = {}
        for group, items in zip(groups, replies, strict=True):
            for key, item in zip(group, items, strict=True):
                if item is not None:
                    found[key] = item
        return found, []

    def set(self, key: bytes, item: bytes, ttl: float | None) -> Operation[None]:
        yield Commands((_set(key, item, _px(ttl)),), "a write", key=key)

    def set_many(self, items: Mapping[bytes, bytes], ttl: float | None) -> Operation[list[Failure]]:
        if not items:
            return []
        px = _px(ttl)
        commands = tuple(_set(key, item, px) for key, item in items.items())
        # one pipeline (per node on a Cluster), not a transaction
        step = Commands(commands, "a write")
        return (yield from self._batch(list(items), step))[1]

    def add(self, key: bytes, item: bytes, ttl: float | None) -> Operation[bool]:
        # A retry after a lost reply finds the key taken (by itself) and says False: the caller
        # of add() learns the key holds a value, which is so.
        reply = yield Commands((_set(key, item, _px(ttl), "NX"),), "add", key=key)
        return bool(reply)

    def replace(self, key: bytes, item: bytes, ttl: float | None) -> Operation[bool]:
        reply = yield Commands((_set(key, item, _px(ttl), "XX"),), "replace", key=key)
        return bool(reply)

    def gets(self, key: bytes) -> Operation[tuple[bytes | None, object | None]]:
        item = yield from self.get(key)
        return item, None if item is None else item_stamp(item)

    def cas(
        self, key: bytes, item: bytes, ttl: float | KeepTTL | None, stamp: object
    ) -> Operation[bool]:
        if not isinstance(stamp, str):
            return False
        px: int | str = "keep" if ttl is KEEP_TTL else 0 if ttl is None else ms(ttl)
        reply = yield from self._script("kv_cas.lua", key, stamp, item, px, what="cas")
        return bool(reply == 1)

    def append(self, key: bytes, data: bytes, prepend: bool) -> Operation[bool | None]:
        op = "prepend" if prepend else "append"
        done = yield from self._script("kv_append.lua", key, op, data, what=op)
        return None if done == -1 else done == 1

    def delete(self, key: bytes) -> Operation[bool]:
        reply = yield Commands((("DEL", key),), "a delete", key=key)
        return bool(reply)

    def delete_many(self, keys: Sequence[bytes]) -> Operation[list[Failure]]:
        if not keys:
            return []
        commands = tuple(("DEL", *group) for group in self._by_slot(keys))
        return (yield from self._batch(keys, Commands(commands, "a delete")))[1]

    def touch(self, key: bytes, ttl: float | None) -> Operation[bool]:
        if ttl is not None:
            reply = yield Commands((("PEXPIRE", key, ms(ttl)),), "touch", key=key)
            return bool(reply)
        replies = yield Commands(
            (("EXISTS", key), ("PERSIST", key)), "touch", transaction=True, key=key
        )
        return bool(replies[0])

    def _count(self, op: str, key: bytes, delta: int, ttl: float | None) -> Operation[int]:
        reply = yield from self._script(
            "kv_counter.lua", key, op, delta, 0 if ttl is None else ms(ttl), what=op
        )
        return int(reply)

    def incr(self, key: bytes, delta: int, ttl: float | None) -> Operation[int]:
        return (yield from self._count("incr", key, delta, ttl))

    def decr(self, key: bytes, delta: int, ttl: float | None) -> Operation[int]:
        return (yield from self._count("decr", key, delta, ttl))

    @staticmethod
    def _publish_commands(
        key: bytes, item: bytes, px: int | None, wake_key: bytes
    ) -> tuple[tuple[Any, ...], ...]:
        commands: tuple[tuple[Any, ...], ...] = (
            _set(key, item, px),
            ("DEL", wake_key),
            ("RPUSH", wake_key, b"1"),
        )
        if px is not None:
            commands += (("PEXPIRE", wake_key, px),)
        return commands

    def publish(
        self, key: bytes, item: bytes, ttl: float | None, wake_key: bytes
    ) -> Operation[None]:
        commands = self._publish_commands(key, item, _px(ttl), wake_key)
        yield Commands(commands, "a result", transaction=True, key=key)

    def publish_many(
        self, items: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> Operation[list[Failure]]:
        if not items:
            return []
        px = _px(ttl)
        if not self.cluster:
            # as publish(), in one MULTI: a waiter never sees a wake-up before its item
            commands = tuple(
                command
                for key, item in items.items()
                for command in self._publish_commands(key, item, px, wake_keys[key])
            )
            step = Commands(commands, "a write", transaction=True)
            return (yield from self._batch(list(items), step))[1]
        # A MULTI stays within one slot on a Cluster: one per item (each item and its wake key
        # share a slot).
        failures: list[Failure] = []
        for key, item in items.items():
            try:
                yield from self.publish(key, item, ttl, wake_keys[key])
            except BackendError as exc:
                failures.append(Failure(self.health.name, [key], exc))
        return failures
