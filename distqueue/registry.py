"""The registry: which queues a server holds, with their settings, and which workers are alive.

Every queue object opened on a shared backend records its name and settings here (one
``HSET`` when it is made); every worker beats here while it runs. Tools that look at a server
(the command line, the exporter, the dashboard) read the registry instead of scanning keys.

On Redis the registry has keys of its own, under their own hash tag, so a Redis Cluster keeps
them on one node::

    dqreg:{dq}:queues     hash: queue name -> its settings (JSON), as last opened
    dqreg:{dq}:workers    zset: worker id -> when its description expires (server time, ms)
    dqreg:{dq}:worker:ID  string: a worker's description (JSON), with a TTL each beat renews

A worker that stops beating (it died, or its machine did) disappears by itself once its TTL has
run out. A queue stays registered until it is deleted from the command line (``distqueue
delete``) or forgotten; one whose keys are all gone (deleted, or expired, as a closed
Executor's reply queue) is listed as gone.

On the memory backend the registry lives in the process, for a dashboard mounted in the same
application. Whatever the registry holds is read defensively: an entry that is not what
distqueue writes (someone wrote garbage there) is listed as unreadable, never a crash.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("distqueue.registry")

QUEUES_KEY = "dqreg:{dq}:queues"
WORKERS_KEY = "dqreg:{dq}:workers"
WORKER_KEY_PREFIX = "dqreg:{dq}:worker:"

KINDS = ("fifo", "lifo", "priority")


def _jsonable(value: Any) -> Any:
    """A setting as JSON keeps it: numbers that JSON cannot carry (inf, nan) as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def describe_queue(kind: str, settings: Mapping[str, Any] | None) -> str:
    """The JSON the registry keeps for a queue of ``kind`` opened with ``settings``."""
    record: dict[str, Any] = {"kind": kind, "opened": round(time.time(), 3)}
    for key, value in (settings or {}).items():
        record[key] = _jsonable(value)
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class QueueEntry:
    """A queue as the registry knows it. ``error`` says why an entry could not be read (then
    the other fields are defaults)."""

    name: str
    kind: str = "fifo"
    simple: bool = False
    maxsize: Any = 0
    visibility_timeout: float | None = None
    max_deliveries: int | None = None
    serializer: str = "json"
    opened: float | None = None
    error: str | None = None

    @property
    def readable(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "simple": self.simple,
            "maxsize": self.maxsize,
            "visibility_timeout": self.visibility_timeout,
            "max_deliveries": self.max_deliveries,
            "serializer": self.serializer,
            "opened": self.opened,
            "error": self.error,
        }


def _text(raw: Any) -> tuple[str, str | None]:
    """Bytes from the server as text, and an error when they were not UTF-8."""
    if isinstance(raw, str):
        return raw, None
    try:
        return bytes(raw).decode("utf-8"), None
    except UnicodeDecodeError:
        return bytes(raw).decode("utf-8", "replace"), "not UTF-8"


def _number(value: Any, *, allow_none: bool = True) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return value


def parse_queue_entry(raw_name: Any, raw_value: Any) -> QueueEntry:
    """A registry entry as read from the server; garbage becomes an entry with ``error``."""
    name, name_error = _text(raw_name)
    if name_error:
        return QueueEntry(name=name, error=f"unreadable entry: the name is {name_error}")
    text, text_error = _text(raw_value)
    try:
        if text_error:
            raise ValueError(text_error)
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError(f"not a JSON object: {text[:60]!r}")
        kind = record.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        maxsize = record.get("maxsize", 0)
        if not isinstance(maxsize, (int, float, str)) or isinstance(maxsize, bool):
            raise ValueError(f"bad maxsize {maxsize!r}")
        serializer = record.get("serializer", "json")
        if not isinstance(serializer, str):
            raise ValueError(f"bad serializer {serializer!r}")
        max_deliveries = _number(record.get("max_deliveries"))
        return QueueEntry(
            name=name,
            kind=kind,
            simple=bool(record.get("simple", False)),
            maxsize=maxsize,
            visibility_timeout=_number(record.get("visibility_timeout")),
            max_deliveries=None if max_deliveries is None else int(max_deliveries),
            serializer=serializer,
            opened=_number(record.get("opened")),
        )
    except (ValueError, TypeError) as exc:
        return QueueEntry(name=name, error=f"unreadable entry: {exc}")


@dataclass(frozen=True)
class WorkerEntry:
    """A live worker as its last heartbeat described it; ``error`` for a description that could
    not be read."""

    id: str
    host: str = "?"
    pid: int | None = None
    queue: str = "?"
    concurrency: int | None = None
    started: float | None = None
    beat: float | None = None
    processed: int = 0
    failed: int = 0
    current: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queue": self.queue,
            "concurrency": self.concurrency,
            "started": self.started,
            "beat": self.beat,
            "processed": self.processed,
            "failed": self.failed,
            "current": self.current,
            "error": self.error,
        }


def parse_worker_entry(raw_id: Any, raw_value: Any) -> WorkerEntry:
    """A worker's description as read from the server; garbage becomes an entry with ``error``."""
    worker_id, _ = _text(raw_id)
    text, text_error = _text(raw_value)
    try:
        if text_error:
            raise ValueError(text_error)
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        current = record.get("current", [])
        if not isinstance(current, list) or not all(isinstance(c, dict) for c in current):
            raise ValueError("bad list of current tasks")
        return WorkerEntry(
            id=worker_id,
            host=str(record.get("host", "?")),
            pid=_number(record.get("pid")),
            queue=str(record.get("queue", "?")),
            concurrency=_number(record.get("concurrency")),
            started=_number(record.get("started")),
            beat=_number(record.get("beat")),
            processed=int(_number(record.get("processed", 0), allow_none=False)),
            failed=int(_number(record.get("failed", 0), allow_none=False)),
            current=current,
        )
    except (ValueError, TypeError) as exc:
        return WorkerEntry(id=worker_id, error=f"unreadable heartbeat: {exc}")


# -- writing: queues ------------------------------------------------------------------------


def note_queue(client: Any, name: str, kind: str, settings: Mapping[str, Any] | None) -> None:
    """Record queue ``name`` in the registry of the server ``client`` talks to (one ``HSET``);
    with ``settings`` ``None``, nothing (a queue opened only to look at it).

    A queue that cannot be recorded is still a queue: a failure is logged, never raised (the
    queue's own first call reports a server that is down).
    """
    import redis.exceptions

    if settings is None:
        return
    try:
        client.hset(QUEUES_KEY, name, describe_queue(kind, settings))
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        logger.debug("could not record queue %r in the registry: %s", name, exc)


_memory_lock = threading.Lock()
_memory_queues: dict[str, str] = {}
_memory_workers: dict[str, tuple[float, str]] = {}


def note_memory_queue(name: str, kind: str, settings: Mapping[str, Any] | None) -> None:
    """Record a queue of the memory backend in this process's registry (with ``settings``
    ``None``, nothing)."""
    if settings is None:
        return
    with _memory_lock:
        _memory_queues[name] = describe_queue(kind, settings)


# -- reading, and the rest of writing -----------------------------------------------------


class Registry:
    """The registry of one server (``client``: a ``redis.Redis`` or ``RedisCluster``), or of
    this process when ``client`` is ``None`` (the memory backend).

    Reads raise ``BackendError`` (or its subclasses) when the server fails; what they read is
    checked entry by entry (see :func:`parse_queue_entry`).
    """

    def __init__(self, client: Any = None) -> None:
        self.client = client
        self._beat_script: Any = None

    @property
    def shared(self) -> bool:
        return self.client is not None

    def call(self, what: str, call: Any) -> Any:
        """``call()``, its Redis errors translated into distqueue's, saying it failed to
        ``what``: ``AuthenticationError``, ``BackendConnectionError`` (the server is
        unreachable), ``BackendError``."""
        if self.client is None:
            return call()
        import redis.exceptions

        from .errors import AuthenticationError, BackendConnectionError, BackendError

        try:
            return call()
        except (
            redis.exceptions.AuthenticationError,
            redis.exceptions.AuthorizationError,
            redis.exceptions.NoPermissionError,
        ) as exc:
            raise AuthenticationError(f"the server refused the credentials: {exc}") from exc
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise BackendConnectionError(f"the server is unreachable ({what}): {exc}") from exc
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise BackendError(f"the server failed to {what}: {exc}") from exc

    # -- queues ----------------------------------------------------------------------------

    def queues(self) -> list[QueueEntry]:
        """Every registered queue, sorted by name."""
        if self.client is None:
            with _memory_lock:
                raw: dict[Any, Any] = dict(_memory_queues)
        else:
            raw = self.call("read the registry of queues", lambda: self.client.hgetall(QUEUES_KEY))
        entries = [parse_queue_entry(name, value) for name, value in raw.items()]
        return sorted(entries, key=lambda entry: entry.name)

    def queue(self, name: str) -> QueueEntry | None:
        """The registry's entry for ``name``, or ``None`` when it has none."""
        if self.client is None:
            with _memory_lock:
                value: Any = _memory_queues.get(name)
        else:
            value = self.call("read the registry", lambda: self.client.hget(QUEUES_KEY, name))
        return None if value is None else parse_queue_entry(name, value)

    def note(self, name: str, kind: str, settings: Mapping[str, Any] | None = None) -> None:
        """Record (or update) queue ``name``."""
        if self.client is None:
            note_memory_queue(name, kind, settings)
        else:
            description = describe_queue(kind, settings)
            self.call("record a queue", lambda: self.client.hset(QUEUES_KEY, name, description))

    def forget(self, name: str) -> bool:
        """Remove queue ``name`` from the registry (its keys are untouched); whether it was
        there."""
        if self.client is None:
            with _memory_lock:
                return _memory_queues.pop(name, None) is not None
        return bool(self.call("forget a queue", lambda: self.client.hdel(QUEUES_KEY, name)))

    # -- workers ---------------------------------------------------------------------------

    def beat(self, worker_id: str, description: Mapping[str, Any], ttl: float) -> None:
        """Record a worker's heartbeat, kept ``ttl`` seconds unless renewed."""
        text = json.dumps(dict(description), separators=(",", ":"), default=repr)
        self._beat(worker_id, text, ttl)

    def leave(self, worker_id: str) -> None:
        """Remove a worker at once (it stops)."""
        self._beat(worker_id, "", 1.0)

    def _beat(self, worker_id: str, text: str, ttl: float) -> None:
        if self.client is None:
            with _memory_lock:
                if text:
                    _memory_workers[worker_id] = (time.monotonic() + ttl, text)
                else:
                    _memory_workers.pop(worker_id, None)
            return
        from .backends.scripts import Script

        script = Script(
            self.client, "worker_beat.lua", [WORKERS_KEY, WORKER_KEY_PREFIX + worker_id]
        )
        ttl_ms = max(1, round(ttl * 1000))
        self.call("record a heartbeat", lambda: script(worker_id, ttl_ms, text))

    def workers(self) -> list[WorkerEntry]:
        """The workers whose heartbeat has not run out, sorted by queue and id."""
        if self.client is None:
            now = time.monotonic()
            with _memory_lock:
                for worker_id in [w for w, (until, _) in _memory_workers.items() if until <= now]:
                    del _memory_workers[worker_id]
                pairs: list[tuple[Any, Any]] = [(w, t) for w, (_, t) in _memory_workers.items()]
        else:

            def read() -> list[tuple[Any, Any]]:
                ids = self.client.zrange(WORKERS_KEY, 0, -1)
                if not ids:
                    return []
                # one hash tag: one slot, so MGET works on a Redis Cluster too
                values = self.client.mget([WORKER_KEY_PREFIX + _text(w)[0] for w in ids])
                return [(w, v) for w, v in zip(ids, values, strict=True) if v is not None]

            pairs = self.call("read the registry of workers", read)
        entries = [parse_worker_entry(worker_id, value) for worker_id, value in pairs]
        return sorted(entries, key=lambda entry: (entry.queue, entry.id))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def open_registry(url: str) -> Registry:
    """The registry of the server at ``url`` (``memory://``: this process's own)."""
    from .url import is_redis_url, make_redis_client, resolve_url

    url = resolve_url(url)
    if not is_redis_url(url):
        return Registry(None)
    return Registry(make_redis_client(url))
