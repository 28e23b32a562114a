"""Looking at queues from outside: figures, waiting items, leases, and the operator's actions.

The command line, the exporter and the dashboard read queues through this module. On Redis it
reads each queue's keys as :class:`distqueue.backends.redis.QueueKeys` lays them out, one
pipelined round trip per queue, and never decodes with anything but the safe serializer (a
queue whose producers use pickle shows its items as bytes: looking never runs code). On the
memory backend it uses the public queue API of this process.

Figures are snapshots. ``waiting`` counts the items in the queue's list or sorted set (an item
whose lease ran out counts as in flight until a consumer, or ``qsize()``, takes it back);
``puts`` and ``gets`` are totals the put and take scripts keep (Redis only), from which
:class:`distqueue.sampling.Sampler` computes rates. The oldest waiting item's age is sampled
there too: items carry no time, so :attr:`QueueFigures.oldest` is the stored value at the old
end of the queue, for the sampler to remember since when it has seen it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .backends.base import DeadLetter, Kind
from .errors import DeserializationError, Empty
from .queue import LifoQueue, PriorityQueue, Queue
from .registry import QueueEntry, Registry, open_registry
from .serializers import get_serializer

_REF = b"\0dq:ref:"


def _unrecorded(cls: type[Queue[Any]]) -> type[Queue[Any]]:
    """``cls`` for queues opened to look at them or act on them: the registry keeps the
    settings of the queue's own users."""

    class Unrecorded(cls):  # type: ignore[valid-type,misc]
        def _settings(self) -> None:
            return None

    Unrecorded.__name__ = cls.__name__
    return Unrecorded


_CLASSES: dict[str, type[Queue[Any]]] = {
    "fifo": _unrecorded(Queue),
    "lifo": _unrecorded(LifoQueue),
    "priority": _unrecorded(PriorityQueue),
}

ProgressFn = Callable[[int, int], None]
"""Called with (done, total) as a bulk operation goes."""


class RawSerializer:
    """Hands stored bytes back undecoded, so an operator's look never decodes untrusted bytes.
    It keeps the name of the queue's own serializer, which the registry records."""

    def __init__(self, name: str) -> None:
        self.name = name

    def dumps(self, obj: Any) -> bytes:
        raise TypeError("this view of the queue cannot put items")

    def loads(self, data: bytes) -> Any:
        return bytes(data)


def show(raw: bytes | None, serializer: str) -> str:
    """Stored bytes as a person reads them: the decoded item's ``repr`` for the safe JSON
    serializer, else a short description of the bytes."""
    if raw is None:
        return "(missing)"
    if serializer == "json":
        try:
            return repr(get_serializer(None).loads(raw))
        except Exception as exc:  # whatever the bytes are, they are shown, not raised
            return f"(undecodable, {len(raw)} bytes: {exc})"
    return f"({len(raw)} bytes, {serializer})"


def _payload(kind: str, raw: bytes) -> bytes:
    """The payload inside a stored value: a priority queue's member carries its sort key."""
    from .backends.redis.codec import ItemCodec

    return ItemCodec("", Kind(kind), RawSerializer("raw")).payload(raw)


def _number(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def maxsize_of(entry: QueueEntry) -> Any:
    """The entry's ``maxsize`` as a number (the registry keeps inf and nan as text)."""
    value = entry.maxsize
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0
    return value


@dataclass
class QueueFigures:
    """One queue's figures at one moment; ``error`` when they could not be read (then the
    figures are zeros)."""

    name: str
    kind: str
    maxsize: Any = 0
    waiting: int = 0
    in_flight: int = 0
    dead: int = 0
    unfinished: int = 0
    shut_down: bool = False
    exists: bool = True
    puts: int | None = None
    gets: int | None = None
    put_rate: float | None = None
    get_rate: float | None = None
    oldest_age: float | None = None
    workers: int = 0
    error: str | None = None
    oldest: bytes | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        maxsize = self.maxsize
        if isinstance(maxsize, float) and not math.isfinite(maxsize):
            maxsize = repr(maxsize)
        return {
            "queue": self.name,
            "kind": self.kind,
            "maxsize": maxsize,
            "waiting": self.waiting,
            "in_flight": self.in_flight,
            "dead": self.dead,
            "unfinished": self.unfinished,
            "shut_down": self.shut_down,
            "exists": self.exists,
            "puts_total": self.puts,
            "gets_total": self.gets,
            "put_rate": None if self.put_rate is None else round(self.put_rate, 3),
            "get_rate": None if self.get_rate is None else round(self.get_rate, 3),
            "oldest_age": None if self.oldest_age is None else round(self.oldest_age, 3),
            "workers": self.workers,
            "error": self.error,
        }


@dataclass(frozen=True)
class WaitingItem:
    """An item waiting in a queue, as :meth:`Inspector.peek` shows it (position 0 is next)."""

    position: int
    text: str
    redelivered: bool


@dataclass(frozen=True)
class LeaseInfo:
    """An item in flight: its lease token, the item's id, when the lease runs out (Unix time)
    and the worker that holds it, when a worker's heartbeat names it."""

    token: str
    item_id: str
    deadline: float
    holder: str | None = None


def _raw_keys(name: str, kind: str) -> Any:
    from .backends.redis import QueueKeys

    return QueueKeys(name, Kind(kind))


class Inspector:
    """Reads and steers the queues at ``url``; see the module's docstring. :meth:`close` it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.registry: Registry = open_registry(url)
        self.client = self.registry.client

    @property
    def shared(self) -> bool:
        return self.client is not None

    def close(self) -> None:
        self.registry.close()

    def __enter__(self) -> Inspector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _redis(self, what: str, call: Callable[[], Any]) -> Any:
        return self.registry.call(what, call)

    # -- figures ---------------------------------------------------------------------------

    def figures(self, entries: Iterable[QueueEntry]) -> list[QueueFigures]:
        """The figures of each readable queue of ``entries`` (an unreadable entry gives figures
        with its error). Raises ``BackendConnectionError`` when the server cannot be reached."""
        found = []
        for entry in entries:
            if not entry.readable:
                found.append(QueueFigures(entry.name, entry.kind, error=entry.error))
            elif self.shared:
                found.append(self._redis_figures(entry))
            else:
                found.append(self._memory_figures(entry))
        return found

    def _redis_figures(self, entry: QueueEntry) -> QueueFigures:
        import redis.exceptions

        k = _raw_keys(entry.name, entry.kind)
        figures = QueueFigures(entry.name, entry.kind, maxsize=maxsize_of(entry))

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            if entry.kind == "priority":
                pipe.zcard(k.items)
            else:
                pipe.llen(k.items)
            pipe.zcard(k.leases)
            pipe.llen(k.dead)
            pipe.hmget(k.meta, ["unfinished", "shutdown", "puts", "gets", "kind"])
            pipe.exists(k.items, k.meta, k.leases, k.dead, k.payloads)
            if entry.kind != "priority":
                pipe.lindex(k.items, -1)
            return list(pipe.execute(raise_on_error=False))

        replies = self._redis(f"read queue {entry.name!r}", read)
        errors = [r for r in replies if isinstance(r, redis.exceptions.RedisError)]
        if errors:
            figures.error = f"unreadable: {errors[0]}"
            return figures
        figures.waiting, figures.in_flight, figures.dead = (_number(r) for r in replies[:3])
        unfinished, shutdown, puts, gets, kind = replies[3]
        if kind is not None and kind.decode("utf-8", "replace") != entry.kind:
            figures.error = (
                f"unreadable: the server keeps a {kind.decode('utf-8', 'replace')!r} queue "
                f"under this name, the registry says {entry.kind!r}"
            )
            return figures
        figures.unfinished = _number(unfinished)
        figures.shut_down = shutdown is not None
        figures.puts = _number(puts)
        figures.gets = _number(gets)
        figures.exists = bool(replies[4])
        if entry.kind != "priority":
            figures.oldest = replies[5]
        return figures

    def _memory_figures(self, entry: QueueEntry) -> QueueFigures:
        figures = QueueFigures(entry.name, entry.kind, maxsize=maxsize_of(entry))
        queue = self.open(entry)
        try:
            figures.waiting = queue.qsize()
            figures.in_flight = queue.in_flight()
            figures.dead = len(queue.dead_letters(2**31 - 1))
            figures.unfinished = queue.unfinished_tasks
            figures.shut_down = queue.is_shutdown
        except ValueError as exc:  # the process holds another kind under this name
            figures.error = f"unreadable: {exc}"
        finally:
            queue.close()
        return figures

    # -- looking inside --------------------------------------------------------------------

    def open(self, entry: QueueEntry, *, leased: bool = True) -> Queue[Any]:
        """A queue object for the operator's actions on ``entry``: the entry's own settings, and
        items handed out as their stored bytes (never decoded; see :class:`RawSerializer`)."""
        cls = _CLASSES[entry.kind]
        serializer: Any = RawSerializer(entry.serializer) if self.shared else None
        return cls(
            maxsize_of(entry),
            url=self.url,
            name=entry.name,
            serializer=serializer,
            visibility_timeout=entry.visibility_timeout if leased else None,
            max_deliveries=entry.max_deliveries or 5,
        )

    def _need_shared(self, what: str) -> None:
        if not self.shared:
            raise ValueError(f"{what} needs a Redis URL: memory:// queues live in one process")

    def peek(
        self, entry: QueueEntry, offset: int = 0, limit: int = 20, search: str | None = None
    ) -> list[WaitingItem]:
        """Up to ``limit`` waiting items from ``offset`` on, in the order get() hands them out,
        without taking them; with ``search``, only those whose text contains it (the first
        10,000 items are searched)."""
        self._need_shared("peek")
        if offset < 0 or limit < 1:
            raise ValueError("peek needs an offset >= 0 and a limit >= 1")
        k = _raw_keys(entry.name, entry.kind)
        start, stop = (0, 9_999) if search else (offset, offset + limit - 1)

        def read() -> list[bytes]:
            if entry.kind == "priority":
                return list(self.client.zrange(k.items, start, stop))
            if entry.kind == "fifo":  # FIFO takes from the right end
                return list(self.client.lrange(k.items, -stop - 1, -start - 1))[::-1]
            return list(self.client.lrange(k.items, start, stop))

        raws = self._redis(f"peek at queue {entry.name!r}", read)
        refs: dict[int, str] = {}
        for i, raw in enumerate(raws):
            payload = _payload(entry.kind, raw)
            if payload.startswith(_REF):
                refs[i] = payload[len(_REF) :].decode("ascii", "replace").split(":")[0]
        if refs:
            values = self._redis(
                "read redelivered items", lambda: self.client.hmget(k.payloads, list(refs.values()))
            )
            for (i, _), value in zip(refs.items(), values, strict=True):
                raws[i] = value
        items = []
        for i, raw in enumerate(raws):
            text = show(None if raw is None else _payload(entry.kind, raw), entry.serializer)
            items.append(WaitingItem(start + i, text, i in refs))
        if search:
            items = [item for item in items if search.lower() in item.text.lower()]
            items = items[offset : offset + limit]
        return items

    def leases(self, entry: QueueEntry, limit: int = 100) -> list[LeaseInfo]:
        """The leases in progress, soonest deadline first, with their holders where a live
        worker's heartbeat names the item."""
        self._need_shared("listing leases")
        k = _raw_keys(entry.name, entry.kind)

        pairs = self._redis(
            f"read the leases of {entry.name!r}",
            lambda: self.client.zrange(k.leases, 0, limit - 1, withscores=True),
        )
        holders: dict[str, str] = {}
        for worker in self.registry.workers():
            for task in worker.current:
                holders[str(task.get("id"))] = worker.id
        found = []
        for token, score in pairs:
            text = token.decode("utf-8", "replace")
            found.append(
                LeaseInfo(text, text.split(":")[0], float(score) / 1000, holders.get(text))
            )
        return found

    def dead_letters(self, entry: QueueEntry, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters (undecoded: ``payload`` holds their bytes)."""
        queue = self.open(entry)
        try:
            return queue.dead_letters(limit)
        finally:
            queue.close()

    # -- actions ---------------------------------------------------------------------------

    def requeue_dead(
        self,
        entry: QueueEntry,
        ids: list[str] | None = None,
        progress: ProgressFn | None = None,
        chunk: int = 500,
    ) -> int:
        """Requeue the dead letters with ``ids`` (``None``: all of them, oldest first), in
        chunks of ``chunk``, reporting to ``progress``. Returns how many were requeued."""
        return self._dead_action(entry, "requeue", ids, progress, chunk)

    def purge_dead(
        self,
        entry: QueueEntry,
        ids: list[str] | None = None,
        progress: ProgressFn | None = None,
        chunk: int = 500,
    ) -> int:
        """Delete the dead letters with ``ids`` (``None``: all of them) for good, as
        :meth:`requeue_dead` goes. Returns how many were deleted."""
        return self._dead_action(entry, "purge", ids, progress, chunk)

    def _dead_action(
        self,
        entry: QueueEntry,
        action: str,
        ids: list[str] | None,
        progress: ProgressFn | None,
        chunk: int,
    ) -> int:
        if ids is not None:
            self._need_shared("choosing dead letters by id or error")
        queue = self.open(entry)
        done = 0
        try:
            if ids is None:
                total = self.figures([entry])[0].dead
                step = queue.requeue_dead if action == "requeue" else queue.purge_dead
                while done < total:
                    moved = step(min(chunk, total - done))
                    if moved == 0:
                        break
                    done += moved
                    if progress:
                        progress(done, total)
                return done
            script = self._pick_script(entry)
            for i in range(0, len(ids), chunk):
                part = ids[i : i + chunk]

                def pick(part: list[str] = part) -> Any:
                    return script(entry.kind, action, *part)

                done += int(self._redis(f"{action} dead letters", pick))
                if progress:
                    progress(min(i + chunk, len(ids)), len(ids))
            return done
        finally:
            queue.close()

    def _pick_script(self, entry: QueueEntry) -> Any:
        from .backends.redis.table import SCRIPTS
        from .backends.scripts import Script

        spec = SCRIPTS["dead_pick"]
        keys = _raw_keys(entry.name, entry.kind).of(spec.keys)
        return Script(self.client, spec.file, keys, retry_safe=spec.retry_safe)

    def purge_waiting(
        self, entry: QueueEntry, progress: ProgressFn | None = None, chunk: int = 500
    ) -> int:
        """Take every item waiting now off the queue and count it done, without decoding it.
        Returns how many. Items put meanwhile may be taken too; items in flight stay."""
        queue = self.open(entry, leased=False)
        done = 0
        try:
            total = queue.qsize()
            while done < total:
                try:
                    taken = queue.get_many(min(chunk, total - done), block=False)
                except DeserializationError:
                    continue  # kept as a dead letter (memory never raises this)
                except Empty:
                    break
                for _ in taken:
                    queue.task_done()
                done += len(taken)
                if progress:
                    progress(done, total)
            return done
        finally:
            queue.close()

    def delete(self, entry: QueueEntry) -> None:
        """Delete the queue and everything it holds, and forget it in the registry."""
        queue = self.open(entry)
        try:
            queue.delete()
        finally:
            queue.close()
        self.registry.forget(entry.name)

    def server_time(self) -> float:
        """The server's clock (Unix time), or this machine's for memory."""
        if not self.shared:
            return time.time()
        seconds, micros = self._redis("read the server's clock", self.client.time)
        return float(seconds) + float(micros) / 1e6


def entry_or_error(registry: Registry, name: str) -> QueueEntry:
    """The registry's entry for ``name``; ``ValueError`` saying what to do when there is none
    or it is unreadable."""
    entry = registry.queue(name)
    if entry is None:
        raise ValueError(
            f"no queue {name!r} is registered on this server (see `distqueue queues`); "
            "a queue is registered when a program opens it"
        )
    if not entry.readable:
        raise ValueError(f"queue {name!r}: {entry.error}")
    return entry
