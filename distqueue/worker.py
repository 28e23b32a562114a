r"""The worker: takes items from a queue under a lease and runs them.

Two modes:

* tasks submitted by :class:`distqueue.Executor` (the default): the worker checks the task
  message (its signature when the worker has a signing key, and that the function it names is
  allowed here, before importing anything; see :mod:`distqueue.tasks`), calls the function,
  stores the value or the exception in the results store for the task's ``result_ttl`` with
  the task's serializer, tells the submitter, and acknowledges the item. A message it refuses
  becomes a dead letter that says why;
* a function of the user's (``distqueue worker ... module:function``): called with each item;
  an item whose call raises is given back with back-off and, after ``max_deliveries`` attempts,
  becomes a dead letter carrying the last error.

A task or function may be an ``async def`` function: this worker runs its coroutine on an event
loop of its own, shared by its threads (one coroutine per thread at a time);
:class:`distqueue.aio.worker.AsyncWorker` runs many at once on one loop, with this module's code
for everything but the running.

Every item is leased (``visibility_timeout``), so an item in the hands of a worker that dies is
delivered again. ``stop()`` (SIGTERM or SIGINT from :meth:`Worker.run`) takes no new work and
lets the items in hand finish; a second signal exits at once.

While it runs, a worker beats in the server's registry (:mod:`distqueue.heartbeat`): host,
process id, queue, concurrency, when it started, how many items it processed and failed, and
the items in hand; ``distqueue workers`` lists it. A task that raises
:class:`distqueue.BackOff` pauses its whole queue and goes back to it.

**A task never stops its worker.** Whatever a task raises, ``SystemExit``, ``KeyboardInterrupt``
and other ``BaseException``\ s included, fails that task alone; the worker's own stop signals
are handled by signal handlers, never by exceptions out of a task. An exception whose
``str()``/``repr()`` raise is reported with what could be learnt of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

from . import tasks
from .errors import (
    BackendConnectionError,
    BackOff,
    DeserializationError,
    DistQueueError,
    Empty,
    ShutDown,
)
from .executor import ReplyQueue
from .heartbeat import DEFAULT_INTERVAL, Heartbeat
from .leases import Message, retry_delay_for
from .queue import Queue
from .results import ResultStore
from .serializers import SignedSerializer, get_serializer
from .tasks import Outcome

logger = logging.getLogger("distqueue.worker")


class ItemOutcome:
    """What became of the item being handled, for the metrics: ``"processed"``, ``"failed"``
    or ``"retried"``. Each thread (or asyncio task) handling an item calls :meth:`begin` and
    sees its own record; work it hands to another thread sees the same record when run in a
    copy of its context (``contextvars.copy_context().run``)."""

    def __init__(self) -> None:
        self._record: contextvars.ContextVar[list[str]] = contextvars.ContextVar("outcome")

    def begin(self) -> None:
        """A new item: ``"processed"`` until said otherwise."""
        self._record.set(["processed"])

    @property
    def value(self) -> str:
        record = self._record.get(None)
        return "processed" if record is None else record[0]

    @value.setter
    def value(self, outcome: str) -> None:
        record = self._record.get(None)
        if record is not None:
            record[0] = outcome


class Worker:
    """Runs the items of ``queue`` in ``concurrency`` threads until stopped.

    ``function``: called with each item (user mode); ``None`` runs Executor tasks, which needs
    ``results``. ``allow``: the tasks it may run besides those registered with
    :func:`distqueue.task` in this process, as module names and ``module:function`` paths (see
    :class:`distqueue.tasks.Allowlist`). ``signing_key``: when given, only task messages signed
    with it run, and only they may carry pickle. Each thread leases up to ``prefetch`` items at
    once when that many wait. ``poll`` is how long one wait for an item lasts before the worker
    checks whether it was asked to stop (a blocking server wait, not a busy loop).
    ``heartbeat``: seconds between two beats in the registry (``None``: none).
    ``metrics``: an object whose ``item_finished(seconds, outcome)`` is called after each item,
    ``outcome`` one of ``"processed"``, ``"failed"``, ``"retried"``, and ``queue_waited(seconds)``
    before each Executor task it can tell the submission time of (see
    :class:`distqueue.metrics.WorkerMetrics`).
    """

    def __init__(
        self,
        queue: Queue[Any],
        function: Callable[[Any], Any] | None = None,
        *,
        results: ResultStore | None = None,
        concurrency: int = 1,
        prefetch: int = 4,
        poll: float = 0.5,
        stats_interval: float = 10.0,
        allow: tasks.Allowlist | Iterable[str] = (),
        signing_key: bytes | str | None = None,
        heartbeat: float | None = DEFAULT_INTERVAL,
        metrics: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be >= 1, not {prefetch}")
        self.prefetch = prefetch
        self.queue = queue
        self.function = function
        self.results = results
        self.concurrency = concurrency
        self.poll = poll
        self.stats_interval = stats_interval
        self.processed = 0
        self.failed = 0
        self.retried = 0
        self.started = time.time()
        self.heartbeat_interval = heartbeat
        self.metrics = metrics
        self._in_hand: dict[int, dict[str, Any]] = {}
        self._outcome = ItemOutcome()
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._crashed = False
        self._replies: dict[str, Queue[Any]] = {}
        self._replies_lock = threading.Lock()
        self._functions: dict[str, Callable[..., Any]] = {}
        self._loop_thread: _LoopThread | None = None
        self.allow = allow if isinstance(allow, tasks.Allowlist) else tasks.Allowlist(allow)
        self.signing_key = tasks.signing_key(signing_key)
        self._stores: dict[str, ResultStore] = {}
        if results is not None and results.serializer.name != "pickle":
            self._stores[results.serializer.name] = results

    # -- running ---------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> int:
        """Work until stopped; returns the process exit status (0 after a graceful stop)."""
        if handle_signals:
            self._install_signal_handlers()
        heartbeat = self._start_heartbeat()
        threads = [
            threading.Thread(target=self._guarded_loop, name=f"distqueue-worker-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        logger.info(
            "worker on queue %r: %d thread(s), %s",
            self.queue.name,
            self.concurrency,
            "Executor tasks" if self.function is None else f"function {self.function!r}",
        )
        for thread in threads:
            thread.start()
        last_time, last_count = time.monotonic(), 0
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(self.stats_interval / max(1, len(threads)))
            now = time.monotonic()
            if now - last_time >= self.stats_interval:
                rate = (self.processed - last_count) / (now - last_time)
                logger.info(
                    "processed %d items (%.1f/s), %d failed", self.processed, rate, self.failed
                )
                last_time, last_count = now, self.processed
        logger.info("worker stopped: %d processed, %d failed", self.processed, self.failed)
        if heartbeat is not None:
            heartbeat.stop()
        self._close()
        return 1 if self._crashed else 0

    def _close(self) -> None:
        with self._replies_lock:
            for reply in self._replies.values():
                reply.close()
            self._replies.clear()
            loop_thread, self._loop_thread = self._loop_thread, None
        for store in self._stores.values():
            if store is not self.results:
                store.close()
        if loop_thread is not None:
            loop_thread.close()

    def stop(self) -> None:
        """Take no new work; items in hand finish. :meth:`run` then returns 0."""
        self._stopping.set()

    def describe(self) -> dict[str, Any]:
        """What the worker's heartbeat says of it."""
        with self._count_lock:
            in_hand = [dict(entry) for entry in self._in_hand.values()]
            processed, failed = self.processed, self.failed
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queue": self.queue.name,
            "concurrency": self.concurrency,
            "mode": "tasks" if self.function is None else "function",
            "started": round(self.started, 3),
            "processed": processed,
            "failed": failed,
            "current": in_hand,
        }

    def _start_heartbeat(self) -> Heartbeat | None:
        if self.heartbeat_interval is None or self.queue.url is None:
            return None
        from .registry import open_registry

        try:
            registry = open_registry(self.queue.url)
        except (DistQueueError, ValueError) as exc:
            logger.warning("no heartbeat: %s", exc)
            return None
        heartbeat = _OwningHeartbeat(registry, self.describe, interval=self.heartbeat_interval)
        heartbeat.start()
        return heartbeat

    def _install_signal_handlers(self) -> None:
        def handle(signum: int, frame: Any) -> None:
            if self._stopping.is_set():
                logger.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(128 + signum)
            logger.info(
                "%s: finishing the items in hand, then stopping (again to exit now)",
                signal.Signals(signum).name,
            )
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def _guarded_loop(self) -> None:
        try:
            self._loop()
        except BaseException:
            # Nothing is expected to get here; if something does, the worker stops as a
            # whole and says so with its exit status, rather than serving with fewer threads.
            logger.exception("a worker thread failed; stopping the worker")
            self._crashed = True
            self._stopping.set()

    def _loop(self) -> None:
        finished = _Finished(self)
        while not self._stopping.is_set():
            try:
                messages = self.queue.get_messages(self.prefetch, timeout=self.poll)
            except Empty:
                continue
            except ShutDown:
                logger.info("queue %r was shut down", self.queue.name)
                self._stopping.set()
                return
            except DeserializationError as exc:  # already kept as a dead letter
                self._count(failed=True)
                logger.error("%s", exc)
                continue
            except BackendConnectionError as exc:
                logger.error("cannot reach the queue's server, retrying: %s", exc)
                self._stopping.wait(1.0)
                continue
            for i, message in enumerate(messages):
                if self._stopping.is_set():  # a graceful stop: give back what was not begun
                    self._release(messages[i:])
                    break
                self._handle_safely(message, finished)
            self._settle(finished)

    def _handle_safely(self, message: Message[Any], finished: _Finished) -> None:
        me = threading.get_ident()
        with self._count_lock:
            self._in_hand[me] = {
                "id": message.id,
                "since": round(time.time(), 3),
                "deliveries": message.deliveries,
            }
        self._outcome.begin()
        began = time.perf_counter()
        try:
            self._handle_counted(message, finished)
        finally:
            with self._count_lock:
                self._in_hand.pop(me, None)
            if self.metrics is not None:
                self.metrics.item_finished(time.perf_counter() - began, self._outcome.value)

    def _handle_counted(self, message: Message[Any], finished: _Finished) -> None:
        try:
            self._handle(message, finished)
        except BackendConnectionError as exc:
            # The server went away while the item was in hand (storing a result, or
            # acknowledging). The item's lease runs out and it is delivered again: a
            # duplicate run at worst, never a lost item. The worker waits and goes on.
            self._count(failed=True)
            logger.error("lost the server while handling item %s: %s", message.id, exc)
            message.abandon()
            self._stopping.wait(1.0)
        # The worker outlives any failure of one item: it is logged, counted and the
        # item handled by the lease rules; the loop goes on with the next item.
        except Exception:
            self._count(failed=True)
            logger.exception("failed to handle item %s", message.id)
            try:
                self._give_back(message, "the worker failed to handle it")
            except DistQueueError as exc:
                logger.error("could not give item %s back: %s", message.id, exc)
                message.abandon()
        if finished.due():
            self._settle(finished)

    def _settle(self, finished: _Finished) -> None:
        count = len(finished)
        try:
            finished.flush()
        except DistQueueError as exc:  # the batch's items are abandoned: delivered again
            logger.error("could not report %d finished item(s): %s", count, exc)
            self._stopping.wait(1.0)

    def _release(self, messages: list[Message[Any]]) -> None:
        for message in messages:
            try:
                message.nack()
            except DistQueueError:  # its lease runs out and it comes back anyway
                message.abandon()

    # -- one item --------------------------------------------------------------------------

    def _handle(self, message: Message[Any], finished: _Finished) -> None:
        call = self._prepare(message)
        if isinstance(call, _Refusal):
            self._refuse(message, call, finished)
            return
        if call.function is None:  # its failure is already in call.error
            self._conclude(message, call, finished, False, call.error)
            return
        try:
            value = call.function(*call.args, **call.kwargs)
        except BaseException as exc:  # whatever it is, it fails this item, not the worker
            self._conclude(message, call, finished, False, exc)
            return
        if inspect.isawaitable(value):  # an ``async def`` task: run on the worker's loop
            self._conclude(message, call, finished, *self._coroutines().run(value))
        else:
            self._conclude(message, call, finished, True, value)

    def _prepare(self, message: Message[Any]) -> _Call | _Refusal:
        """What to call for ``message``, or why it is refused; no I/O (a first import at most)."""
        if self.function is not None:
            return _Call(self.function, (message.item,), {}, None, None)
        if self.results is None:
            raise DistQueueError("this worker runs Executor tasks but has no results store")
        try:
            task = tasks.TaskMessage.decode(message.item)
            task.verify(self.signing_key)
        except tasks.TaskRefused as exc:  # not from a submitter it can trust: no reply
            return _Refusal(exc.reason, None, None, None)
        submitted = tasks.submitted_at(task.task_id)
        if submitted is not None and self.metrics is not None:
            self.metrics.queue_waited(max(0.0, time.time() - submitted))
        store = self._store_for(task.serializer)
        try:
            function = self._functions.get(task.path) or self.allow.resolve(task.path)
            self._functions[task.path] = function
            args, kwargs = task.arguments()
        except tasks.TaskRefused as exc:  # tell the submitter, whose message this is
            outcome = tasks.failure_outcome(task.task_id, exc, store.serializer)
            return _Refusal(exc.reason, task, store, outcome)
        except tasks.TaskNotFound as exc:
            logger.error("task %s: %s", task.task_id, exc)
            return _Call(None, (), {}, task, store, exc)
        return _Call(function, args, kwargs, task, store)

    def _conclude(
        self,
        message: Message[Any],
        call: _Call,
        finished: _Finished,
        succeeded: bool,
        result: Any,
    ) -> None:
        """Report what the call returned (``succeeded``) or raised; in the user's mode, a
        failed item is given back (I/O), else everything waits in ``finished``. A call that
        raised :class:`BackOff` pauses the queue and goes back to it."""
        if not succeeded and isinstance(result, BackOff):
            self._back_off(message, result)
            return
        task = call.task
        if task is None:
            if succeeded:
                finished.add(message)
                self._count()
                return
            error = f"{tasks.exception_type_name(result)}: {tasks.render_exception(result)}"
            self._count(failed=True)
            logger.error("item %s failed (delivery %d): %s", message.id, message.deliveries, error)
            self._give_back(message, error)
            return
        assert call.store is not None
        if succeeded:
            outcome = Outcome(task.task_id, result)
        else:
            self._count(failed=True)
            outcome = tasks.failure_outcome(task.task_id, result, call.store.serializer)
            if call.function is not None:
                logger.info(
                    "task %s (%s) raised %s: %s",
                    task.task_id,
                    task.path,
                    outcome.exc_type,
                    outcome.message,
                )
        finished.add(message, reply=task.reply, outcome=outcome, store=call.store, ttl=task.ttl)
        self._count()

    def _back_off(self, message: Message[Any], request: BackOff) -> None:
        """The item asked its whole queue to pause: pause it, and give the item back to run
        again (once the pause ends, as every other item)."""
        logger.warning("item %s: %s; pausing queue %r", message.id, request, self.queue.name)
        self._outcome.value = "retried"  # it runs again once the pause ends
        try:
            self.queue.pause(request.seconds)
        finally:
            message.nack()

    def _give_back(self, message: Message[Any], error: str) -> None:
        if message.deliveries >= self.queue.max_deliveries:
            message.reject(f"failed {message.deliveries} times; last error: {error}")
        else:
            message.nack(retry_delay_for(message.deliveries))
            self._outcome.value = "retried"
            with self._count_lock:
                self.retried += 1

    def _coroutines(self) -> _LoopThread:
        with self._replies_lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread()
            return self._loop_thread

    def _refuse(self, message: Message[Any], refusal: _Refusal, finished: _Finished) -> None:
        self._count(failed=True)
        logger.error("refused item %s: %s", message.id, refusal.reason)
        message.reject(f"refused: {refusal.reason}")
        if refusal.task is not None and refusal.outcome is not None:
            task = refusal.task
            finished.add(
                None, reply=task.reply, outcome=refusal.outcome, store=refusal.store, ttl=task.ttl
            )

    def _store_for(self, serializer: str) -> ResultStore:
        """The results store that writes with ``serializer`` (the same servers and namespace)."""
        assert self.results is not None
        with self._replies_lock:
            store = self._stores.get(serializer)
            if store is None:
                writer = get_serializer(serializer)
                if serializer == "pickle":
                    # The submitter loads these with pickle: it takes only results signed with
                    # the key (a worker runs pickle tasks only when it has it).
                    assert self.signing_key is not None
                    writer = SignedSerializer(writer, self.signing_key)
                store = self._stores[serializer] = ResultStore(
                    self.results.url, namespace=self.results.namespace, serializer=writer
                )
            return store

    def _reply_queue(self, reply_name: str) -> Queue[Any]:
        with self._replies_lock:
            reply = self._replies.get(reply_name)
            if reply is None:
                reply = ReplyQueue(url=self.queue.url, name=reply_name)
                if len(self._replies) > 1000:
                    self._replies.pop(next(iter(self._replies))).close()
                self._replies[reply_name] = reply
            return reply

    def _count(self, *, failed: bool = False) -> None:
        if failed:
            self._outcome.value = "failed"
        with self._count_lock:
            if failed:
                self.failed += 1
            else:
                self.processed += 1


class _Call(NamedTuple):
    """What to run for one item: ``function(*args, **kwargs)``; for an Executor task also the
    task and the store of its outcome. ``function`` is ``None`` when the task cannot run, and
    ``error`` then says why."""

    function: Callable[..., Any] | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    task: tasks.TaskMessage | None
    store: ResultStore | None
    error: BaseException | None = None


class _Refusal(NamedTuple):
    """An item that must not run: a dead letter saying ``reason``; for a task whose submitter
    is known (``task``), also a failed ``outcome`` for it."""

    reason: str
    task: tasks.TaskMessage | None
    store: ResultStore | None
    outcome: Outcome | None


async def settle(awaitable: Awaitable[Any]) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, exception)``, whatever ``awaitable`` raises.

    ``SystemExit`` and ``KeyboardInterrupt`` from a coroutine would otherwise leave the task
    that runs it and stop the event loop itself; here they are caught like any other
    exception, and so is a ``CancelledError`` that the task raised of its own accord.
    """
    try:
        return True, await awaitable
    except BaseException as exc:  # whatever it is, it fails this task, not the worker
        return False, exc


class _LoopThread:
    """An event loop in a thread of its own, where the threads of a :class:`Worker` run the
    coroutines of ``async def`` tasks (so each thread runs one at a time, and all of them
    share one loop, as loop-bound clients need)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="distqueue-worker-loop", daemon=True
        )
        self._thread.start()

    def run(self, awaitable: Awaitable[Any]) -> tuple[bool, Any]:
        """Run ``awaitable`` on the loop and wait for it: see :func:`settle`."""
        future = asyncio.run_coroutine_threadsafe(settle(awaitable), self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError as exc:  # the loop closed under it
            return False, exc

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


class _Finished:
    """Items a worker finished and has yet to report: results to store, announcements to put
    on the submitters' reply queues, then acknowledgements, in one round trip each per batch.

    The report is sent once a batch is done, or as soon as the oldest finished item has waited
    ``FLUSH_AFTER`` seconds, so that slow items are reported one by one. Items may be added
    from any thread, also while a report is being sent: :meth:`flush` sends what was there
    when it began.
    """

    FLUSH_AFTER = 0.005

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._lock = threading.Lock()
        self._batch = _Batch()

    def __len__(self) -> int:
        return self._batch.count

    def add(
        self,
        message: Message[Any] | None,
        *,
        reply: str | None = None,
        outcome: Outcome | None = None,
        store: ResultStore | None = None,
        ttl: float | None = None,
    ) -> None:
        """Report ``outcome`` (kept ``ttl`` seconds in ``store``) on ``reply``, then acknowledge
        ``message``; ``None``: a message already settled otherwise."""
        with self._lock:
            self._batch.add(message, reply, outcome, store, ttl)

    def due(self) -> bool:
        batch = self._batch
        return bool(batch.count) and time.monotonic() - batch.since >= self.FLUSH_AFTER

    def flush(self) -> None:
        """Send the report. If it fails, its messages are abandoned (their leases run out and
        they are delivered again) and the error raised."""
        with self._lock:
            batch, self._batch = self._batch, _Batch()
        if not batch.count:
            return
        try:
            batch.send(self._worker)
        except BaseException:
            batch.abandon()
            raise

    def abandon(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, _Batch()
        batch.abandon()


class _Batch:
    """One report of :class:`_Finished`."""

    def __init__(self) -> None:
        self.messages: list[Message[Any]] = []
        self.replies: dict[str, list[str]] = {}
        self.outcomes: dict[tuple[int, float | None], tuple[ResultStore, list[Outcome]]] = {}
        self.count = 0
        self.since = 0.0

    def add(
        self,
        message: Message[Any] | None,
        reply: str | None,
        outcome: Outcome | None,
        store: ResultStore | None,
        ttl: float | None,
    ) -> None:
        if not self.count:
            self.since = time.monotonic()
        self.count += 1
        if message is not None:
            self.messages.append(message)
        if reply is not None and outcome is not None and store is not None:
            self.replies.setdefault(reply, []).append(tasks.announcement(outcome.task_id))
            self.outcomes.setdefault((id(store), ttl), (store, []))[1].append(outcome)

    def send(self, worker: Worker) -> None:
        # Store results, announce them, then acknowledge: a worker that dies in between has
        # its items run again (at least once), and nothing is announced before it is stored.
        for (_, ttl), (store, outcomes) in self.outcomes.items():
            store.set_many(outcomes, ttl=ttl)
        for reply_name, task_ids in self.replies.items():
            try:
                worker._reply_queue(reply_name).put_many(task_ids)
            except ShutDown:  # the submitter is gone; the results stay until their TTL
                logger.info("the submitter of %d task(s) no longer listens", len(task_ids))
        if self.messages:
            worker.queue.ack_many(self.messages)

    def abandon(self) -> None:
        for message in self.messages:
            message.abandon()


class _OwningHeartbeat(Heartbeat):
    """A heartbeat that closes its registry's connection when it stops."""

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.registry.close()
