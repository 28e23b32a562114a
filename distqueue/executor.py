"""``Executor``: a ``concurrent.futures.Executor`` whose work runs on distqueue workers.

``submit(fn, *args, **kwargs)`` puts a task on a queue and returns a
``concurrent.futures.Future``; a worker (``distqueue worker --url URL --queue NAME``) anywhere
runs it and stores the outcome in the results store; the Executor learns of it through a reply
queue of its own (a blocking wait, no polling), fetches the outcome and completes the future.
``map``, ``shutdown``, and ``concurrent.futures.wait``/``as_completed`` work as usual.

Functions travel by import path, arguments and results through the safe serializer (or
pickle, when asked for, in signed messages only); see :mod:`distqueue.tasks` for what a task
is and what a message holds. A result that expired or was evicted before it was fetched
completes its future with ``ResultMissing``.

When the Executor closes, its reply queue is shut down, so that a worker's late announcement is
refused on the server in the same step as the check, and on Redis every key of the reply queue
is given a TTL (``REPLY_QUEUE_TOMBSTONE`` seconds), so that nothing of it stays for ever.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor as _FuturesExecutor
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, overload

from . import tasks
from .backends.base import Kind
from .errors import BackendError, DistQueueError, Empty, ShutDown
from .kv.base import check_ttl
from .options import put_options
from .queue import Queue
from .results import ResultStore
from .serializers import Serializer, SignedSerializer, get_serializer
from .url import is_redis_url, make_redis_client, results_url_for

logger = logging.getLogger("distqueue.executor")


@dataclass(frozen=True)
class SubmitOptions:
    """How :meth:`Executor.submit_with` queues a task: ``delay`` (seconds) or ``at`` (a
    ``datetime`` with a time zone) before workers see it, by the queue server's clock; and
    ``dedup_key`` with ``dedup_for`` (seconds): queue nothing when a task with the same key was
    queued within that window (its future is then cancelled). As for
    :meth:`distqueue.Queue.put`."""

    delay: float | None = None
    at: datetime.datetime | None = None
    dedup_key: str | None = None
    dedup_for: float | None = None

    def as_put_kwargs(self) -> dict[str, Any]:
        """The keywords of :meth:`distqueue.Queue.put`; raises as it does for bad values."""
        put_options(self.delay, self.at, self.dedup_key, self.dedup_for)  # checked now
        return {
            "delay": self.delay,
            "at": self.at,
            "dedup_key": self.dedup_key,
            "dedup_for": self.dedup_for,
        }


P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUEUE = "distqueue-tasks"

_BATCH = 256  # announcements taken from the reply queue at once
_REPLY_LEASE = 30.0  # seconds before an announcement not acknowledged comes back
_REPLY_DELIVERIES = 1_000_000  # announcements are retried, never dead-lettered
_RETRY_DELAY = 1.0  # seconds before reading a result whose server was away, again
REPLY_QUEUE_TOMBSTONE = 24 * 3600.0
"""Seconds the shut-down reply queue of a closed Executor refuses late announcements on Redis
before its last keys expire."""


class ReplyQueue(Queue[Any]):
    """An Executor's reply queue: plumbing, left out of the server's registry of queues (one
    Executor after another would fill it with names)."""

    def _settings(self) -> None:
        return None


class Executor(_FuturesExecutor):
    """Run calls on distqueue workers, as ``concurrent.futures`` runs them on threads.

    ``url``: the queue's URL (``None``: ``$DISTQUEUE_URL``, else memory, where only workers in
    this process can serve it); ``queue``: the queue's name, which workers are started with;
    ``results``: the results store's URL (``memcached://``, ``redis://``, ``memory://``;
    default: the queue's URL); ``result_ttl``: seconds a result is kept for fetching (``None``:
    until fetched), which workers honour; ``serializer``: ``"json"`` (the safe default) or
    ``"pickle"`` for arguments and results; ``signing_key``: sign every task message with this
    shared key (HMAC-SHA256), for workers started with the same key. Pickle needs a key: a
    worker loads pickle only from messages it verified. Raises ``ValueError`` for a serializer
    other than those, pickle without a key, or a ``result_ttl`` that is not a positive number.

    ``Future.cancel()`` stops the future from ever completing here; a worker that already took
    the task still runs it.

    In asyncio code, ``await asyncio.wrap_future(future)``: futures are completed from the
    Executor's own thread, and the wrapper hands each outcome to its event loop thread-safely
    (callbacks added to the wrapper run on the loop; those added to the future itself, in the
    Executor's thread). Cancelling the wrapper cancels the future, as above. An ``async def``
    task's future holds what its coroutine returned.
    """

    def __init__(
        self,
        url: str | None = None,
        queue: str = DEFAULT_QUEUE,
        results: str | None = None,
        *,
        result_ttl: float | None = 24 * 3600.0,
        serializer: Serializer | str | None = None,
        signing_key: bytes | str | None = None,
    ) -> None:
        self._serializer = get_serializer(serializer)
        self._signing_key = tasks.signing_key(signing_key)
        self._result_ttl = check_ttl(result_ttl, "result_ttl")
        name = getattr(self._serializer, "name", None)
        if name not in tasks.SERIALIZERS:
            raise ValueError(f"tasks travel with the json or pickle serializer, not {name!r}")
        if name == "pickle" and self._signing_key is None:
            raise ValueError(
                "serializer='pickle' needs a signing_key: workers load pickle only from signed "
                "messages"
            )
        # The task messages themselves are always safe JSON; only their bodies may be pickle.
        self._queue: Queue[Any] = Queue(url=url, name=queue)
        queue_url = self._queue.url
        assert queue_url is not None
        self.url = queue_url
        results_serializer: Serializer = self._serializer
        if name == "pickle":
            # workers sign the pickle results they store; a result without that signature is
            # refused before pickle runs any of it
            assert self._signing_key is not None
            results_serializer = SignedSerializer(self._serializer, self._signing_key)
        self._results = ResultStore(
            results or results_url_for(queue_url),
            ttl=self._result_ttl,
            serializer=results_serializer,
        )
        self._reply_name = f"{queue}:replies:{uuid.uuid4().hex}"
        self._replies: Queue[Any] = ReplyQueue(
            url=queue_url,
            name=self._reply_name,
            visibility_timeout=_REPLY_LEASE,
            max_deliveries=_REPLY_DELIVERIES,
        )
        self._pending: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._shutdown = False
        self._closed = False
        self._collector: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        # submitted, not yet queued: task id, message, put() keywords (None: a plain put)
        self._outbox: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        self._outbox_ready = threading.Condition(self._lock)
        self._paths: dict[Callable[..., Any], str] = {}  # functions checked once, not per call

    def submit_in(
        self, delay: float, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """As :meth:`submit`, with the task out of the workers' sight for ``delay`` seconds
        (by the queue server's clock). Raises as :meth:`submit`, and ``TypeError`` or
        ``ValueError`` for a bad ``delay``."""
        return self._submit(SubmitOptions(delay=delay), fn, args, kwargs)

    def submit_at(
        self, when: datetime.datetime, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """As :meth:`submit`, with the task out of the workers' sight until ``when`` (a
        ``datetime`` with a time zone). Raises as :meth:`submit`, and ``TypeError`` or
        ``ValueError`` for a naive or bad ``when``."""
        return self._submit(SubmitOptions(at=when), fn, args, kwargs)

    def submit_with(
        self, options: SubmitOptions, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """As :meth:`submit`, queued as ``options`` say (see :class:`SubmitOptions`). A task
        refused as a duplicate is not queued and its future is cancelled."""
        return self._submit(options, fn, args, kwargs)

    @overload
    def submit(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]: ...

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

    def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)`` on a worker; return its ``Future``.

        Raises ``ValueError`` for anything that is not a task (see :mod:`distqueue.tasks`: a
        lambda, a local function, one defined in ``__main__``, a built-in or C function such as
        ``len``, a class, a method not marked with :func:`distqueue.task`), ``TypeError``
        (``SerializationError``) for arguments the serializer cannot carry, ``RuntimeError``
        after :meth:`shutdown`; nothing is queued in those cases. The task is queued by a
        background thread right away; if its queue's server cannot be reached, the future gets
        that error.
        """
        return self._submit(None, fn, args, kwargs)

    def _submit(
        self,
        options: SubmitOptions | None,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Future[R]:
        put_kwargs = None if options is None else options.as_put_kwargs()
        try:
            path = self._paths[fn]
        except (KeyError, TypeError):  # TypeError: an unhashable callable, looked up each time
            path = tasks.function_path(fn)
            with contextlib.suppress(TypeError):
                self._paths[fn] = path
        task_id = tasks.new_task_id()
        # Encoding the arguments here gives the caller the SerializationError, before anything
        # is queued.
        task = tasks.TaskMessage.build(
            task_id,
            path,
            args,
            dict(kwargs),
            self._reply_name,
            serializer=self._serializer,
            ttl=self._result_ttl,
            key=self._signing_key,
        ).encode()
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._pending[task_id] = future
            if self._collector is None:
                self._collector = threading.Thread(
                    target=self._collect, name="distqueue-executor-results", daemon=True
                )
                self._collector.start()
                self._sender = threading.Thread(
                    target=self._send, name="distqueue-executor-tasks", daemon=True
                )
                self._sender.start()
            self._outbox.append((task_id, task, put_kwargs))
            self._outbox_ready.notify()
        return future

    def _send(self) -> None:
        """Put submitted tasks on the queue: each batch that gathered while the previous one was
        on its way goes in one round trip, so a lone submit is sent at once and a burst of
        them does not pay a round trip each. A task that cannot be queued fails its future."""
        while True:
            with self._lock:
                while not self._outbox and not self._shutdown:
                    self._outbox_ready.wait()
                if not self._outbox:
                    return
                batch = self._outbox[:_BATCH]
                del self._outbox[:_BATCH]
            batch = [entry for entry in batch if entry[0] in self._pending]
            plain = [(task_id, task) for task_id, task, put_kwargs in batch if put_kwargs is None]
            if plain:
                self._put(plain, None)
            for task_id, task, put_kwargs in batch:
                if put_kwargs is not None:
                    self._put([(task_id, task)], put_kwargs)

    def _put(
        self, batch: list[tuple[str, dict[str, Any]]], put_kwargs: dict[str, Any] | None
    ) -> None:
        """Queue the tasks of ``batch``, all in one step, or the one task with ``put_kwargs``:
        a failure fails their futures, and a put refused as a duplicate cancels its future."""
        try:
            if put_kwargs is None:
                queued = self._queue.put_many([task for _, task in batch])
            else:
                queued = self._queue.put(batch[0][1], **put_kwargs)
        except (DistQueueError, ShutDown) as exc:  # the queue's server, or the queue, is gone
            with self._lock:
                failed = [self._pending.pop(task_id, None) for task_id, _ in batch]
            for future in failed:
                if future is not None and future.set_running_or_notify_cancel():
                    future.set_exception(exc)
            return
        if queued is False:
            with self._lock:
                refused = [self._pending.pop(task_id, None) for task_id, _ in batch]
            for future in refused:
                if future is not None:
                    future.cancel()

    def _collect(self) -> None:
        """Complete futures as their results are announced on the reply queue.

        Announcements are leased in batches, and their results read and deleted in one round
        trip per batch, so that the submitting process is not the bottleneck. An announcement
        is acknowledged only once its future is complete: one lost on a dropped connection, or
        whose result could not be read because the results server was away, comes back.
        """
        while True:
            with self._lock:
                if self._shutdown and not self._pending:
                    return
            try:
                messages = self._replies.get_messages(_BATCH, timeout=5.0)
            except Empty:
                continue
            except ShutDown:
                return
            except DistQueueError as exc:
                logger.error("cannot read the reply queue, retrying: %s", exc)
                threading.Event().wait(1.0)
                continue
            ready: dict[str, Future[Any]] = {}
            with self._lock:
                for message in messages:
                    task_id = tasks.announced_task(message.item)
                    if task_id is None:  # the wake-up from shutdown()
                        continue
                    future = self._pending.get(task_id)
                    if future is not None:  # None: cancelled, or completed already
                        ready[task_id] = future
            retry = self._complete(ready) if ready else set()
            try:
                self._replies.ack_many(m for m in messages if m.item not in retry)
                for message in messages:
                    if message.item in retry:
                        message.nack(_RETRY_DELAY)
            except DistQueueError as exc:  # they come back when their lease runs out
                logger.warning("could not settle %d announcement(s): %s", len(messages), exc)
                for message in messages:
                    message.abandon()

    def _complete(self, ready: dict[str, Future[Any]]) -> set[str]:
        """Complete the futures whose results can be read; return the ids to try again."""
        try:
            outcomes = self._results.fetch_many(list(ready))
        except BackendError as exc:  # the results store failed as a whole
            outcomes = dict.fromkeys(ready, exc)
        retry = {
            task_id
            for task_id, outcome in outcomes.items()
            if isinstance(outcome, BackendError)  # its server is away: the result may be there
        }
        finished = []
        for task_id, future in ready.items():
            if task_id in retry:
                continue
            with self._lock:
                self._pending.pop(task_id, None)
            finished.append(task_id)
            if not future.set_running_or_notify_cancel():
                continue  # cancelled meanwhile
            outcome = outcomes[task_id]
            if isinstance(outcome, DistQueueError):  # ResultMissing, an undecodable result
                future.set_exception(outcome)
            elif outcome.failed:
                future.set_exception(tasks.exception_from(outcome))
            else:
                future.set_result(outcome.value)
        if retry:
            logger.warning(
                "results server unreachable; %d result(s) will be read again", len(retry)
            )
        try:
            if finished:
                self._results.forget_many(finished)
        except DistQueueError as exc:  # they expire by their TTL anyway
            logger.debug("could not delete %d result(s): %s", len(finished), exc)
        return retry

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more tasks; with ``wait``, return once every future is done.

        ``cancel_futures`` cancels the futures of tasks not yet completed (their tasks may
        still run on workers). Connections are released once the last future is done.
        """
        with self._lock:
            already = self._shutdown
            self._shutdown = True
            pending = list(self._pending.items())
            self._outbox_ready.notify_all()  # the sender sends what is left, then ends
        if cancel_futures:
            for task_id, future in pending:
                if future.cancel():
                    with self._lock:
                        self._pending.pop(task_id, None)
        if not already:
            try:
                self._replies.put(tasks.WAKE_UP)  # the collector then sees the shutdown
            except DistQueueError as exc:  # it sees it at the end of its current wait
                logger.warning("could not wake the result collector: %s", exc)
        collector = self._collector
        if collector is None:
            self._close()
        elif wait:
            collector.join()
            self._close()
        else:
            threading.Thread(target=self._close_after, args=(collector,), daemon=True).start()

    def _close_after(self, collector: threading.Thread) -> None:
        collector.join()
        self._close()

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._sender is not None:
            self._sender.join()
        try:
            self._retire_replies()
        except DistQueueError as exc:  # the server is away: the reply queue stays behind
            logger.warning("could not remove the reply queue %r: %s", self._reply_name, exc)
        self._replies.close()
        self._queue.close()
        self._results.close()

    def _retire_replies(self) -> None:
        """Remove the reply queue so that a worker finishing a task late cannot bring it back
        for ever: shut down, a put onto it is refused by the same server step that checks (the
        worker logs that the submitter is gone); then, on Redis, every key it has or had gets a
        TTL. In memory it is simply deleted."""
        if not is_redis_url(self.url):
            self._replies.delete()
            return
        self._replies.shutdown(immediate=True)
        import redis

        from .backends.redis import QueueKeys

        client = make_redis_client(self.url)
        try:
            with client.pipeline(transaction=True) as pipe:
                for key in QueueKeys(self._reply_name, Kind.FIFO).types:
                    pipe.expire(key, int(REPLY_QUEUE_TOMBSTONE))
                pipe.execute()
        except redis.exceptions.RedisError as exc:
            raise BackendError(f"cannot set the TTL of the reply queue's keys: {exc}") from exc
        finally:
            client.close()
