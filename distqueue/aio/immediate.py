"""The calls of ``asyncio.Queue`` that return at once (``put_nowait``, ``get_nowait``, ``qsize``
...), for an async queue on Redis: one round trip each through a blocking client of the
queue's own, one attempt, at most ``_NOW_TIMEOUT`` seconds (more with ``wait_replicas``), over
the async queue's own protocol (see :mod:`distqueue.aio.queue` for why).

A ``get_nowait`` whose reply is lost is sent again from the event loop under its request id,
and what it took goes back to the queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from ..backends.redis import RedisBackend
from ..backends.redis.protocol import SHUT_DOWN, Run, lease_length_ms
from ..errors import BackendConnectionError, Empty, OutcomeUnknownError, ShutDown
from ..url import make_redis_clients, redis_options

_NOW_TIMEOUT = 1.0  # the most a call that cannot await may stall the loop, per attempt


def open_immediate(url: str, backend: Any) -> RedisImmediate:
    """The blocking client of an async Redis queue (``backend``) at ``url``."""
    options = redis_options(url)
    allowance = _NOW_TIMEOUT + (options.wait_timeout if options.wait_replicas else 0.0)
    tight = dataclasses.replace(
        options,
        socket_timeout=min(options.socket_timeout, allowance),
        connect_timeout=min(options.connect_timeout, _NOW_TIMEOUT),
        retry_window=0.01,  # below the first back-off: one attempt
    )
    commands, waits = make_redis_clients(url, tight)
    waits.close()
    sync = RedisBackend(
        commands, backend.name, backend.kind, backend.protocol.codec.serializer, options=tight
    )
    return RedisImmediate(sync, backend)


class RedisImmediate:
    """The blocking calls of one async Redis queue (see the module's text)."""

    def __init__(self, sync: Any, backend: Any) -> None:
        self._sync = sync
        self._protocol = backend.protocol

    def _drive(self, operation: Any) -> Any:
        perform = self._sync._perform
        try:
            step = next(operation)
            while True:
                step = operation.send(perform(step))
        except StopIteration as done:
            return done.value

    def put(self, item: Any, maxsize: int, timeout: float | None) -> None:
        self._drive(self._protocol.put(item, maxsize, timeout))

    def qsize(self) -> int:
        return int(self._drive(self._protocol.qsize()))

    def unfinished_tasks(self) -> int:
        return int(self._drive(self._protocol.unfinished_tasks()))

    def is_shutdown(self) -> bool:
        return bool(self._drive(self._protocol.is_shutdown()))

    def take(self, backend: Any, lease_seconds: float, max_deliveries: int) -> Any:
        protocol = self._protocol
        lease_ms = lease_length_ms(lease_seconds) if lease_seconds else 0
        operation = protocol.take_once(1, lease_ms, max_deliveries, 0.0)
        step = next(operation)
        assert type(step) is Run
        try:
            reply = self._sync._perform(step)
        except OutcomeUnknownError as exc:
            # The take may have run: learn what it took and give it back, from the loop.
            with contextlib.suppress(RuntimeError):  # no loop running: nobody to do it
                backend.spawn(backend.settle(operation, step, lease_ms, max_deliveries))
            raise BackendConnectionError(
                f"queue {backend.name!r}: get_nowait() got no answer from the server; "
                "whatever it took goes back to the queue"
            ) from exc
        try:
            operation.send(reply)
        except StopIteration as done:
            result = done.value
        if not isinstance(result, list):
            raise ShutDown if result == SHUT_DOWN else Empty
        if lease_ms:
            return self._drive(protocol.decode_leases(result))
        return self._drive(protocol.decode_items(result))

    def close(self) -> None:
        self._sync.close()
