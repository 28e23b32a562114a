"""The worker on an event loop: ``async def`` tasks run as coroutines, many at once.

:class:`AsyncWorker` is a :class:`distqueue.worker.Worker` whose items run on one event loop
instead of in threads: up to ``concurrency`` at once, each an ``async def`` function's
coroutine (a plain function runs in a pool of threads meanwhile, so it never blocks the loop).
Everything else is the thread worker's own code: how a task message is checked (signature,
allow list) and refused, how outcomes are reported and items acknowledged in batches, how a
failing item is given back, how a task that raises :class:`distqueue.BackOff` pauses the
queue. Each item is listed in the heartbeat while it runs and told to ``metrics`` when it
ends, with its own outcome (:class:`~distqueue.worker.ItemOutcome`). The blocking queue
calls (leasing, reporting, giving back) run in two threads of their own, so the loop never
waits for the server; leases are renewed by the queue's heartbeat while their items run.

Stopping: :meth:`AsyncWorker.stop` (SIGTERM or SIGINT from :meth:`AsyncWorker.run`) takes no
new work and lets the running items finish, as the thread worker does. With ``grace`` set,
the items still running after ``grace`` seconds are cancelled and given back (delivered again
later, not counted as a delivery that failed). A second signal exits at once; the leased items
come back by the lease rule.

A task ends the same way as on the thread worker whatever it raises: ``SystemExit``,
``KeyboardInterrupt`` and a ``CancelledError`` of its own fail that task alone (see
:func:`distqueue.worker.settle`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import tasks
from ..errors import (
    BackendConnectionError,
    BackOff,
    DeserializationError,
    DistQueueError,
    Empty,
    ShutDown,
)
from ..heartbeat import DEFAULT_INTERVAL
from ..leases import Message
from ..queue import Queue
from ..results import ResultStore
from ..worker import Worker, _Call, _Finished, _Refusal, logger, settle

MAX_LEASE_BATCH = 100
"""The most items one round trip leases (as many as there are free slots, up to this)."""

MAX_THREADS = 32
"""The most threads that run plain (not ``async def``) functions at once."""


class AsyncWorker(Worker):
    """Runs the items of ``queue`` on an event loop, ``concurrency`` at once, until stopped.

    The arguments are :class:`Worker`'s (``concurrency`` counts coroutines here, and plain
    functions run in a pool of ``min(concurrency, 32)`` threads), plus ``grace``: seconds the
    running items get to finish after a stop before they are cancelled and given back
    (``None``: as long as they take). ``prefetch`` is not used: each lease takes as many items
    as there are free slots, at most 100.
    """

    def __init__(
        self,
        queue: Queue[Any],
        function: Callable[[Any], Any] | None = None,
        *,
        results: ResultStore | None = None,
        concurrency: int = 100,
        prefetch: int = 4,
        poll: float = 0.5,
        stats_interval: float = 10.0,
        allow: tasks.Allowlist | Iterable[str] = (),
        signing_key: bytes | str | None = None,
        grace: float | None = None,
        heartbeat: float | None = DEFAULT_INTERVAL,
        metrics: Any = None,
    ) -> None:
        super().__init__(
            queue,
            function,
            results=results,
            concurrency=concurrency,
            prefetch=prefetch,
            poll=poll,
            stats_interval=stats_interval,
            allow=allow,
            signing_key=signing_key,
            heartbeat=heartbeat,
            metrics=metrics,
        )
        if grace is not None and not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds or None, not {grace!r}")
        self.grace = grace
        self._running: dict[asyncio.Task[None], Message[Any]] = {}
        self._coroutines_running: set[asyncio.Task[None]] = set()
        self._cancelled: set[asyncio.Task[None]] = set()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._drained = False

    # -- running ---------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> int:
        """Work until stopped; returns the process exit status (0 after a graceful stop)."""
        logger.info(
            "worker on queue %r: an event loop, up to %d item(s) at once, %s",
            self.queue.name,
            self.concurrency,
            "Executor tasks" if self.function is None else f"function {self.function!r}",
        )
        heartbeat = self._start_heartbeat()
        try:
            asyncio.run(self._main(handle_signals))
        except BaseException:
            logger.exception("the worker's event loop failed; stopping the worker")
            self._crashed = True
        logger.info("worker stopped: %d processed, %d failed", self.processed, self.failed)
        if heartbeat is not None:
            heartbeat.stop()
        self._close()
        return 1 if self._crashed else 0

    def stop(self) -> None:
        """Take no new work; running items finish (within ``grace``). :meth:`run` then
        returns 0. May be called from any thread."""
        super().stop()
        loop, stopped = self._event_loop, self._stopped
        if loop is not None and stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the worker has stopped
                loop.call_soon_threadsafe(_set_result, stopped)

    async def _main(self, handle_signals: bool) -> None:
        loop = self._event_loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopped = loop.create_future()
        if self._stopping.is_set():
            self._stopped.set_result(None)
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
        # One thread leases (a lease may wait ``poll`` seconds), one reports and gives back, so
        # that a report never waits behind a lease; plain functions have a pool of their own.
        fetcher = concurrent.futures.ThreadPoolExecutor(1, "distqueue-worker-lease")
        reporter = concurrent.futures.ThreadPoolExecutor(1, "distqueue-worker-report")
        threads = concurrent.futures.ThreadPoolExecutor(
            min(self.concurrency, MAX_THREADS), "distqueue-worker"
        )
        finished = _Finished(self)
        stats = asyncio.ensure_future(self._log_stats())
        reports = asyncio.ensure_future(self._report(finished, reporter))
        try:
            await self._take(finished, fetcher, reporter, threads)
            await self._drain()
        finally:
            self._stopping.set()
            self._drained = True
            self._wake.set()
            await reports
            stats.cancel()
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            threads.shutdown(wait=True)
            fetcher.shutdown(wait=True)
            reporter.shutdown(wait=True)

    def _on_signal(self, signum: int) -> None:
        if self._stopping.is_set():
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        logger.info(
            "%s: finishing the items in hand, then stopping (again to exit now)",
            signal.Signals(signum).name,
        )
        self.stop()

    async def _take(
        self,
        finished: _Finished,
        fetcher: concurrent.futures.Executor,
        reporter: concurrent.futures.Executor,
        threads: concurrent.futures.Executor,
    ) -> None:
        """Lease items while there are free slots, and start each as a task of the loop."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                assert self._stopped is not None
                await asyncio.wait(
                    [*self._running, self._stopped], return_when=asyncio.FIRST_COMPLETED
                )
                continue
            lease = functools.partial(
                self.queue.get_messages, min(free, MAX_LEASE_BATCH), timeout=self.poll
            )
            try:
                messages = await loop.run_in_executor(fetcher, lease)
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
                await loop.run_in_executor(fetcher, self._stopping.wait, 1.0)
                continue
            if self._stopping.is_set():  # a graceful stop: give back what was not begun
                await loop.run_in_executor(reporter, self._release, messages)
                return
            for message in messages:
                task = asyncio.ensure_future(self._run(message, finished, reporter, threads))
                self._running[task] = message
                task.add_done_callback(self._running.pop)

    async def _drain(self) -> None:
        """After a stop: let the running items finish, within ``grace`` seconds if set."""
        if not self._running:
            return
        logger.info("waiting for %d running item(s)", len(self._running))
        _, late = await asyncio.wait(list(self._running), timeout=self.grace)
        coroutines = late & self._coroutines_running  # plain functions in threads finish
        if coroutines:
            logger.warning(
                "giving back %d item(s) still running after %g s", len(coroutines), self.grace
            )
            for task in coroutines:
                self._cancelled.add(task)
                task.cancel()
        if late:
            await asyncio.wait(late)

    # -- one item --------------------------------------------------------------------------

    async def _run(
        self,
        message: Message[Any],
        finished: _Finished,
        reporter: concurrent.futures.Executor,
        threads: concurrent.futures.Executor,
    ) -> None:
        """Handle one item, listed among the items in hand (the heartbeat's ``current``) while
        it runs, and told to the metrics when it ends, as on the thread worker."""
        key = id(asyncio.current_task())
        with self._count_lock:
            self._in_hand[key] = {
                "id": message.id,
                "since": round(time.time(), 3),
                "deliveries": message.deliveries,
            }
        self._outcome.begin()  # this task's own record (each task runs in a copied context)
        began = time.perf_counter()
        try:
            await self._handle_one(message, finished, reporter, threads)
        finally:
            with self._count_lock:
                self._in_hand.pop(key, None)
            if self.metrics is not None:
                self.metrics.item_finished(time.perf_counter() - began, self._outcome.value)
            self._wake.set()

    async def _handle_one(
        self,
        message: Message[Any],
        finished: _Finished,
        reporter: concurrent.futures.Executor,
        threads: concurrent.futures.Executor,
    ) -> None:
        try:
            call = self._prepare(message)
            if isinstance(call, _Refusal):
                await _off_loop(reporter, self._refuse, message, call, finished)
            elif call.function is None:
                self._conclude(message, call, finished, False, call.error)
            else:
                succeeded, result = await self._call(call, threads)
                if not succeeded and self._is_cancelled_by_us():
                    self._outcome.value = "retried"
                    await _off_loop(reporter, self._release, [message])
                    return
                if not succeeded and (call.task is None or isinstance(result, BackOff)):
                    # given back, or the queue paused: I/O, off the loop
                    await _off_loop(
                        reporter, self._conclude, message, call, finished, succeeded, result
                    )
                else:
                    self._conclude(message, call, finished, succeeded, result)
        except asyncio.CancelledError:
            if not self._is_cancelled_by_us():
                raise
            self._outcome.value = "retried"
            await _off_loop(reporter, self._release, [message])
        except BackendConnectionError as exc:
            # As on the thread worker: the item's lease runs out and it is delivered again.
            self._count(failed=True)
            logger.error("lost the server while handling item %s: %s", message.id, exc)
            message.abandon()
        # The worker outlives any failure of one item (see Worker._handle_safely).
        except Exception:
            self._count(failed=True)
            logger.exception("failed to handle item %s", message.id)
            try:
                await _off_loop(
                    reporter, self._give_back, message, "the worker failed to handle it"
                )
            except DistQueueError as exc:
                logger.error("could not give item %s back: %s", message.id, exc)
                message.abandon()

    async def _call(self, call: _Call, threads: concurrent.futures.Executor) -> tuple[bool, Any]:
        """Run the call: a coroutine on this loop, a plain function in a thread."""
        assert call.function is not None
        if inspect.iscoroutinefunction(call.function):
            task = asyncio.current_task()
            if task is not None:
                self._coroutines_running.add(task)
                task.add_done_callback(self._coroutines_running.discard)
            try:
                coroutine = call.function(*call.args, **call.kwargs)
            except BaseException as exc:  # bad arguments, say
                return False, exc
            return await settle(coroutine)
        work = functools.partial(call.function, *call.args, **call.kwargs)
        succeeded, result = await settle(asyncio.get_running_loop().run_in_executor(threads, work))
        if succeeded and inspect.isawaitable(result):  # a plain function returning a coroutine
            return await settle(result)
        return succeeded, result

    def _is_cancelled_by_us(self) -> bool:
        task = asyncio.current_task()
        return task is not None and task in self._cancelled

    async def _report(self, finished: _Finished, reporter: concurrent.futures.Executor) -> None:
        """Send the finished items' report whenever there is one; items finishing meanwhile
        go into the next report. Ends once the worker has stopped and all is reported."""
        loop = asyncio.get_running_loop()
        while True:
            if len(finished):
                await loop.run_in_executor(reporter, self._settle, finished)
                continue
            if self._drained:
                return
            await self._wake.wait()
            self._wake.clear()

    async def _log_stats(self) -> None:
        last_time, last_count = time.monotonic(), 0
        while True:
            await asyncio.sleep(self.stats_interval)
            now = time.monotonic()
            rate = (self.processed - last_count) / (now - last_time)
            logger.info("processed %d items (%.1f/s), %d failed", self.processed, rate, self.failed)
            last_time, last_count = now, self.processed


def _off_loop(executor: concurrent.futures.Executor, function: Any, *args: Any) -> Any:
    """``function(*args)`` in ``executor``, in a copy of this task's context (so that it
    tells this item's outcome, see :class:`~distqueue.worker.ItemOutcome`)."""
    context = contextvars.copy_context()
    return asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(context.run, function, *args)
    )


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
