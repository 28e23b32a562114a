"""A Redis queue's behaviour, with no I/O: what to send, and what each reply means.

Each operation of :class:`QueueProtocol` is a generator. It yields *steps* — run a script
(:class:`Run`), read some keys (:class:`Read`), wait on token lists (:class:`Block`) — and is
sent each step's reply; its return value is the operation's result. It decides everything
else: arguments, request ids, how long each wait may be, when to give up, what a reply means,
which values become dead letters. A *driver* performs the steps: :class:`~.backend.RedisBackend`
with a blocking client; an asyncio driver can run the very same generators with awaits.

A driver answers a :class:`Block` with the key whose token it took, or ``None`` when the wait
ran out or failed (a failed wait counts as a quiet one: the next script call retries the
connection within its own limits). It translates errors of the client library, and retries
:class:`Run` and :class:`Read` steps after connection failures (a :class:`Run` of a
retry-safe script carries its request id, so a retry changes nothing).

**Waiting** is a blocking command (BLPOP) on token lists, never polling: a consumer waits on
``avail`` and ``shutdown``, then takes its item with a script, so an item is never in flight
on a reply that could be lost. One wait lasts at most a slice (so that a dead connection is
noticed) and never 0 seconds (Redis reads 0 as "forever"). Token lists hold at most one token,
handed on by whoever takes it; a stale token costs one extra look, never a wrong answer. A
consumer also wakes when the earliest lease runs out, since its item then comes back.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, TypeVar

from ...errors import Empty, Full, ShutDown
from ...serializers import Serializer
from ..base import Backoff, DeadLetter, Deadline, Kind, Lease, Limits, PutOptions
from ..connection import BLOCK_SLICE, MIN_BLOCK
from ..scripts import RequestIds
from .codec import ItemCodec
from .keys import QueueKeys
from .table import SCRIPTS

logger = logging.getLogger("distqueue.redis")

T = TypeVar("T")

# What the scripts answer instead of a result (see their headers).
SHUT_DOWN = _SHUT_DOWN = -1
_NONE_LEASED = -2
_TOO_LITTLE_ROOM = -3
_KEY_HELD = -4

_BATCH_BACKOFF_MIN = 0.01
_BATCH_BACKOFF_MAX = 0.5
_BATCH_LOOK_AGAIN = 1.0  # well within BATCH_STALE_MS of lua/lib.lua


def lease_length_ms(seconds: float) -> int:
    """A lease length as the scripts take it: whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))


class Run(NamedTuple):
    """Run script ``script`` (a name in :data:`.table.SCRIPTS`) with ``args``: for a
    retry-safe script, its reply key first. ``changes``: whether it changes state (a failure
    after sending leaves its outcome unknown); ``wait_until``: as for
    :meth:`~distqueue.backends.connection.Retrier.run`. The reply: the script's."""

    script: str
    args: tuple[Any, ...]
    what: str
    changes: bool
    wait_until: float | None


class Read(NamedTuple):
    """Run ``commands`` (each a command name and its arguments), which change nothing; several
    go in one round trip. The reply: the command's, or a list of them for several."""

    commands: tuple[tuple[Any, ...], ...]
    what: str


class Block(NamedTuple):
    """Wait up to ``seconds`` for a token on one of ``keys`` (BLPOP). The reply: the key whose
    token was taken (bytes), or ``None``."""

    keys: tuple[str, ...]
    seconds: float


Step = Run | Read | Block
Operation = Generator[Step, Any, T]


class QueueProtocol:
    """The operations of one Redis queue, as generators of steps (see the module's text).

    ``block_slice``: the longest one :class:`Block` may last, which the driver's socket
    timeouts allow.
    """

    def __init__(
        self, name: str, kind: Kind, serializer: Serializer, block_slice: float = BLOCK_SLICE
    ) -> None:
        self.name = name
        self.kind = kind
        self.keys = QueueKeys(name, kind)
        self.codec = ItemCodec(name, kind, serializer)
        self.block_slice = block_slice
        self._kind = kind.value
        self._put_script = "put_priority" if kind is Kind.PRIORITY else "put_list"
        self._request_id = RequestIds()
        self._shutdown_key = self.keys.shutdown.encode()
        # reply keys of calls whose replies arrived, for later calls to delete (one each)
        self._received: collections.deque[str] = collections.deque(maxlen=64)
        self._no_reply = self.keys.reply  # a key never written: nothing received yet

    # -- steps -----------------------------------------------------------------------------

    def _call(
        self, script: str, *args: Any, what: str, wait_until: float | None = 0.0
    ) -> Operation[Any]:
        """Run ``script``; its reply. A retry-safe script's call carries its request's reply
        key, and the key of a reply received earlier, which the server deletes."""
        if not SCRIPTS[script].retry_safe:
            return (yield Run(script, args, what, False, wait_until))
        step = self._safe_run(script, args, what, wait_until)
        reply = yield step
        self._received.append(step.args[1])
        return reply

    def _safe_run(
        self, script: str, args: Sequence[Any], what: str, wait_until: float | None
    ) -> Run:
        """The step of a call of retry-safe ``script`` (see :meth:`_call`); once its reply has
        arrived, its reply key (``args[1]``) goes to ``_received``."""
        try:
            done = self._received.popleft()
        except IndexError:
            done = self._no_reply
        return Run(
            script, (done, self.keys.reply + self._request_id(), *args), what, True, wait_until
        )

    def _wait_time(self, deadline: Deadline, cap: float | None = None) -> float | None:
        """Seconds for the next wait, or ``None`` when the deadline has passed."""
        if cap is None or cap > self.block_slice:
            cap = self.block_slice
        remaining = deadline.remaining()
        if remaining is None:
            return cap
        if remaining < MIN_BLOCK:
            return None
        return min(remaining, cap)

    def _wait(self, keys: tuple[str, ...], seconds: float) -> Operation[None]:
        """Wait on token lists; after taking the shutdown token, hand it on to the next
        blocked client."""
        if (yield Block(keys, seconds)) == self._shutdown_key:
            yield from self.hand_on()

    # -- putting ---------------------------------------------------------------------------

    def put(self, item: Any, maxsize: int, timeout: float | None) -> Operation[bool]:
        codec = self.codec
        if codec.priority:
            return self._put([self._kind, maxsize, "", *codec.put_args((item,))], timeout)
        return self._put([self._kind, maxsize, "", codec.dumps(item)], timeout)

    def put_many(
        self, items: Sequence[Any], maxsize: int, timeout: float | None
    ) -> Operation[None]:
        if not items:
            if (yield from self.is_shutdown()):
                raise ShutDown
            return
        # a batch's ticket: its place in line while it waits for room (see lua/lib.lua)
        ticket = self._request_id() if len(items) > 1 else ""
        yield from self._put([self._kind, maxsize, ticket, *self.codec.put_args(items)], timeout)

    def put_with(
        self, items: Sequence[Any], maxsize: int, timeout: float | None, options: PutOptions
    ) -> Operation[bool]:
        if options.at is not None:
            when: tuple[str, int] = ("at", round(options.at * 1000))
        else:
            when = ("in", max(0, round((options.delay or 0.0) * 1000)))
        key = options.dedup_key
        ticket = self._request_id() if len(items) > 1 else ""
        args = [
            self._kind,
            maxsize,
            ticket,
            *when,
            "" if key is None else key,
            max(1, round(options.dedup_for * 1000)),
            *self.codec.put_args(items),
        ]
        return (yield from self._put(args, timeout, "put_with"))

    def _put(
        self, args: list[Any], timeout: float | None, script: str | None = None
    ) -> Operation[bool]:
        deadline = Deadline(timeout)
        waits = timeout is None or timeout > 0
        # A put rides out an outage only once it is waiting for room, as far as its timeout.
        wait_until: float | None = 0.0
        backoff: Backoff | None = None  # made when first needed
        k = self.keys
        script = script or self._put_script
        while True:
            step = self._safe_run(script, args, "a put", wait_until)
            result = yield step
            self._received.append(step.args[1])
            if result >= 0:
                return True
            if result == _KEY_HELD:
                return False
            if result == _SHUT_DOWN:
                raise ShutDown
            if not waits:
                raise Full
            wait_until = deadline.at
            if result == _TOO_LITTLE_ROOM:
                # A batch that does not fit yet while smaller puts could: the script left the
                # room token for them; this batch looks again after a back-off (a wait that a
                # shutdown still ends at once).
                if backoff is None:
                    backoff = Backoff(_BATCH_BACKOFF_MIN, _BATCH_BACKOFF_MAX)
                wait = self._wait_time(deadline, backoff())
                keys: tuple[str, ...] = (k.shutdown,)
            else:
                # a batch holds its place in line only while it looks again often enough
                wait = self._wait_time(deadline, _BATCH_LOOK_AGAIN if args[2] else None)
                keys = (k.notfull, k.shutdown)
            if wait is None:
                raise Full
            yield from self._wait(keys, wait)

    # -- getting ---------------------------------------------------------------------------

    def get_many(self, n: int, timeout: float | None) -> Operation[list[Any]]:
        raws = yield from self._take(n, timeout, 0, 0)
        items, bad, error = self.codec.decode_all(raws)
        if bad:
            return (yield from self._decoded(items, bad, error))
        return items

    def decode_items(self, raws: list[Any]) -> Operation[list[Any]]:
        """The items of raw values taken without a lease; those that cannot be decoded become
        dead letters (``DeserializationError`` when none can)."""
        return (yield from self._decoded(*self.codec.decode_all(raws)))

    def _decoded(
        self, items: list[Any], bad: list[Any], error: Exception | None
    ) -> Operation[list[Any]]:
        """``items``, once the values in ``bad`` (which ``error`` kept from being decoded)
        are dead letters; ``DeserializationError`` when ``items`` is empty."""
        if bad:
            assert error is not None
            # A payload this queue's serializer cannot read was not put by its producers (or by
            # producers with another serializer): it was never counted, so it does not count as
            # done either.
            yield from self._bury("raw", bad, error)
            if not items:
                raise self.codec.undecodable(bad[0], error) from error
        return items

    @property
    def wait_keys(self) -> tuple[str, str]:
        """The token lists a consumer waits on: an item, or a shutdown."""
        return (self.keys.avail, self.keys.shutdown)

    def take_once(
        self, n: int, lease_ms: int, max_deliveries: int, wait_until: float | None
    ) -> Operation[Any]:
        """One attempt to take up to ``n`` items (leased when ``lease_ms``), with no wait: one
        step, a :class:`Run` that may be sent again as it is. Its result: a list (see
        :meth:`decode_leases` and :meth:`decode_items`), :data:`SHUT_DOWN`, or (see
        :meth:`until_lapse`) when the next lease runs out."""
        return (
            yield from self._call(
                "take",
                self._kind,
                n,
                lease_ms,
                max_deliveries,
                what="a get" if lease_ms == 0 else "a lease",
                wait_until=wait_until,
            )
        )

    @staticmethod
    def until_lapse(result: int) -> float | None:
        """Seconds until the earliest lease runs out, from a take that found nothing (and the
        queue not shut down); ``None`` when no item is leased."""
        return None if result == _NONE_LEASED else result / 1000

    def shutdown_woke(self, key: bytes | None) -> bool:
        """Whether a wait's reply is the shutdown token, which must then be handed on (run
        :meth:`hand_on`, or :meth:`pass_on`)."""
        return key == self._shutdown_key

    def hand_on(self) -> Operation[None]:
        """Hand the shutdown token on to the next blocked client."""
        yield from self._call("signal", what="a shutdown wake-up")

    def wake_one(self) -> Operation[None]:
        """Wake one blocked consumer of the queue, to look at it again (a wake-up token taken
        for tasks that left before they could use it is passed on this way)."""
        yield from self._call("wake", what="a wake-up")

    def pass_on(self, key: bytes) -> Operation[None]:
        """Put back the token taken from list ``key`` for tasks that stopped waiting before
        it came, for the next blocked client."""
        k = self.keys
        if key == self._shutdown_key:
            yield from self.hand_on()
        elif key == k.avail.encode():
            yield from self.wake_one()
        else:
            which = {k.notfull.encode(): 1, k.joined.encode(): 2}.get(key)
            if which is not None:
                yield from self._call("pass_on", which, what="a wake-up")

    def give_back(self, leased: bool, values: Sequence[Any]) -> Operation[int]:
        """Put items taken for a consumer that is gone before it got them back where the next
        get takes from, in order: raw values as a take returned them, or lease tokens (no
        delivery counts). Returns how many went back."""
        if not values:
            return 0
        mode = "lease" if leased else "raw"
        return int(
            (yield from self._call("giveback", self._kind, mode, *values, what="a give-back"))
        )

    def _take(
        self, n: int, timeout: float | None, lease_ms: int, max_deliveries: int
    ) -> Operation[list[Any]]:
        """Take up to ``n`` items (leased when ``lease_ms``), waiting for the first; their raw
        values (with leases: token, raw value, deliveries, ...)."""
        deadline = Deadline(timeout)
        waits = timeout is None or timeout > 0
        what = "a get" if lease_ms == 0 else "a lease"
        args = (self._kind, n, lease_ms, max_deliveries)
        while True:
            step = self._safe_run("take", args, what, deadline.at if waits else 0.0)
            result = yield step
            self._received.append(step.args[1])
            if isinstance(result, list):
                return result
            if result == _SHUT_DOWN:
                raise ShutDown
            if not waits:
                raise Empty
            # Wake for a new item, a shutdown, or when the server said something may change
            # (the earliest lease runs out, a scheduled item is due, a limit lets go).
            cap = None if result == _NONE_LEASED else result / 1000
            wait = self._wait_time(deadline, cap)
            if wait is None:
                if cap is not None:
                    # Consumers that began waiting before that time was known wait for their
                    # slice to end; wake one of them to learn it, since this one leaves.
                    yield from self.wake_one()
                raise Empty
            yield from self._wait(self.wait_keys, wait)

    def _bury(self, mode: str, values: list[Any], error: Exception) -> Operation[None]:
        """Keep values this queue cannot decode as dead letters (uncounted: they were never
        put by this queue's producers), and say so in the log."""
        why = self.codec.why_dead(error)
        yield from self._call("dead", mode, "0", why, *values, what="a dead letter")
        logger.error(
            "queue %r: %d item(s) could not be decoded and became dead letters: %s",
            self.name,
            len(values),
            error,
        )

    # -- tasks, size, shutdown -------------------------------------------------------------

    def qsize(self) -> Operation[int]:
        return int((yield from self._call("size", self._kind, what="qsize()"))[0])

    def scheduled(self) -> Operation[int]:
        return int((yield from self._call("size", self._kind, what="scheduled()"))[1])

    def set_limits(self, limits: Limits) -> Operation[None]:
        rate = "" if limits.rate is None else limits.rate
        conc = "" if limits.concurrency is None else limits.concurrency
        per_ms = max(1, round(limits.per * 1000))
        yield from self._call("limits", "set", rate, per_ms, conc, what="set_limits()")

    def limits(self) -> Operation[Limits]:
        rate, per, conc = yield Read(
            (("HMGET", self.keys.meta, "rate", "per", "conc"),), "limits()"
        )
        return Limits(
            rate=None if rate is None else int(rate),
            per=1.0 if per is None else int(per) / 1000,
            concurrency=None if conc is None else int(conc),
        )

    def pause(self, seconds: float) -> Operation[None]:
        yield from self._call("limits", "pause", max(0, round(seconds * 1000)), what="pause()")

    def task_done(self) -> Operation[None]:
        if (yield from self._call("task_done", what="task_done()")) < 0:
            raise ValueError("task_done() called too many times")

    def join(self, timeout: float | None) -> Operation[bool]:
        deadline = Deadline(timeout)
        while True:
            if (yield from self._call("join_check", what="join()", wait_until=deadline.at)) == 1:
                return True
            wait = self._wait_time(deadline)
            if wait is None:
                return False
            yield Block((self.keys.joined,), wait)

    def unfinished_tasks(self) -> Operation[int]:
        value = yield Read((("HGET", self.keys.meta, "unfinished"),), "unfinished_tasks")
        return int(value or 0)

    def shutdown(self, immediate: bool) -> Operation[None]:
        yield from self._call("shutdown", self._kind, "1" if immediate else "0", what="shutdown()")

    def is_shutdown(self) -> Operation[bool]:
        return bool((yield Read((("HEXISTS", self.keys.meta, "shutdown"),), "is_shutdown")))

    def delete(self) -> Operation[None]:
        yield from self._call("delete", what="delete()")

    # -- leases ----------------------------------------------------------------------------

    def lease(
        self, n: int, timeout: float | None, lease_seconds: float, max_deliveries: int
    ) -> Operation[list[Lease]]:
        result = yield from self._take(n, timeout, lease_length_ms(lease_seconds), max_deliveries)
        return (yield from self.decode_leases(result))

    def decode_leases(self, result: list[Any]) -> Operation[list[Lease]]:
        """The leases of a take's reply (token, raw value, deliveries, ...); those whose value
        cannot be decoded become dead letters (``DeserializationError`` when none can)."""
        leases: list[Lease] = []
        bad: list[tuple[str, bytes, Exception]] = []
        for i in range(0, len(result), 3):
            token = result[i].decode()
            raw = result[i + 1]
            try:
                item = self.codec.decode(raw)
            # Whatever a serializer raises, the payload is unusable: a dead letter.
            except Exception as exc:
                bad.append((token, raw, exc))
                continue
            leases.append(Lease(token, item, int(result[i + 2])))
        if bad:
            error = bad[0][2]
            yield from self._bury(self._kind, [token for token, _, _ in bad], error)
            if not leases:
                raise self.codec.undecodable(bad[0][1], error) from error
        return leases

    def ack(self, ids: Sequence[str]) -> Operation[int]:
        return int((yield from self._call("ack", self._kind, *ids, what="an ack")))

    def nack(self, ids: Sequence[str], delay: float) -> Operation[int]:
        delay_ms = max(0, round(delay * 1000))
        return int((yield from self._call("nack", self._kind, delay_ms, *ids, what="a nack")))

    def bury(self, ids: Sequence[str], error: str) -> Operation[int]:
        if not ids:
            return 0
        return int((yield from self._call("dead", self._kind, "1", error, *ids, what="a reject")))

    def extend(self, ids: Sequence[str], lease_seconds: float) -> Operation[int]:
        lease_ms = max(1, round(lease_seconds * 1000))
        return int((yield from self._call("extend", lease_ms, *ids, what="a lease extension")))

    def in_flight(self) -> Operation[int]:
        return int((yield Read((("ZCARD", self.keys.leases),), "in_flight()")))

    def dead_letters(self, limit: int) -> Operation[list[DeadLetter]]:
        k = self.keys
        ids = yield Read((("LRANGE", k.dead, -limit, -1),), "dead_letters()")
        if not ids:
            return []
        ids = ids[::-1]  # oldest first
        raws, counts, errors = yield Read(
            (("HMGET", k.payloads, *ids), ("HMGET", k.deliveries, *ids), ("HMGET", k.errors, *ids)),
            "dead_letters()",
        )
        letters = []
        for lease_id, raw, count, error in zip(ids, raws, counts, errors, strict=True):
            if raw is None:
                continue
            try:
                item = self.codec.decode(raw)
            except Exception:  # undecodable dead letters are listed with item None
                item = None
            letters.append(
                DeadLetter(
                    id=lease_id.decode() if isinstance(lease_id, bytes) else str(lease_id),
                    item=item,
                    payload=self.codec.payload(raw),
                    deliveries=int(count or 0),
                    error=(error or b"").decode("utf-8", "replace"),
                )
            )
        return letters

    def requeue_dead(self, limit: int) -> Operation[int]:
        return int(
            (yield from self._call("dead_requeue", self._kind, limit, what="requeue_dead()"))
        )

    def purge_dead(self, limit: int) -> Operation[int]:
        return int((yield from self._call("dead_purge", limit, what="purge_dead()")))
