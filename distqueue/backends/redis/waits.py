"""Waits on a queue's token lists shared by the tasks of one process (asyncio).

A task of an asyncio queue that must wait — a put on a full queue, a ``join`` with tasks
unfinished — waits for a token on the server (BLPOP, see :mod:`.protocol`). A thousand such
tasks must not hold a thousand connections: the tasks that wait on the same lists stand in one
line, and one task waits on the server for all of them, one slice at a time, as long as any is
in line. Each token it takes goes to the task that has waited longest, which then looks at the
queue again (and hands the token on through its script when there is more room, or the queue
is joined or shut down: see the scripts), so waiters wake in the order they came, as with
``asyncio.Queue``. A token taken for tasks that all left meanwhile is put back on the server
for the clients of other processes (:meth:`~.protocol.QueueProtocol.pass_on`).

Each task keeps its own deadline: its wait ends with ``None`` (a quiet wait) when its time is
up, whatever the shared wait is doing. Gets have a line of their own, which also takes the
items for its tasks (:mod:`.consumers`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .aio import AsyncRedisBackend

Keys = tuple[str, ...]


def _quiet(future: asyncio.Future[bytes | None]) -> None:
    if not future.done():
        future.set_result(None)


class SharedWaits:
    """The lines of tasks waiting on the token lists of one queue, one line per set of lists
    (see the module's text)."""

    def __init__(self, backend: AsyncRedisBackend) -> None:
        self._backend = backend
        self._lines: dict[Keys, deque[asyncio.Future[bytes | None]]] = {}
        self._servers: dict[Keys, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def waiting(self) -> int:
        """Tasks in a line right now."""
        return sum(1 for line in self._lines.values() for f in line if not f.done())

    async def wait(self, keys: Keys, seconds: float) -> bytes | None:
        """Wait up to ``seconds`` for a token on one of ``keys``: the key it was taken from,
        or ``None`` when the time ran out."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        line = self._lines.setdefault(keys, deque())
        line.append(future)
        if keys not in self._servers:
            self._servers[keys] = loop.create_task(self._serve(keys, line))
        timer = loop.call_later(seconds, _quiet, future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result() is not None:
                # handed a token just as this task was cancelled: to the next in line
                self._hand_on(keys, future.result())
            raise
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                line.remove(future)

    def _hand_on(self, keys: Keys, key: bytes | None) -> None:
        """Give the token taken from ``key`` to the task first in the line of ``keys``; with
        nobody there, put it back on the server."""
        if key is None:
            return
        for future in self._lines.get(keys, ()):
            if not future.done():
                future.set_result(key)
                return
        backend = self._backend
        backend.spawn(backend.drive(backend.protocol.pass_on(key)))

    async def _serve(self, keys: Keys, line: deque[asyncio.Future[bytes | None]]) -> None:
        backend = self._backend
        try:
            while not self._closed and any(not future.done() for future in line):
                self._hand_on(keys, await backend.block(keys, backend.protocol.block_slice))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an error of the server's (translated), not a lost link
            # (what a task waiting on the server by itself would have raised)
            for future in line:
                if not future.done():
                    future.set_exception(exc)
        finally:
            if self._servers.get(keys) is asyncio.current_task():
                del self._servers[keys]

    async def aclose(self) -> None:
        """Stop the waits on the server (the tasks in line see their time run out)."""
        self._closed = True
        servers = list(self._servers.values())
        for task in servers:
            task.cancel()
        await asyncio.gather(*servers, return_exceptions=True)
