"""A worker's heartbeat: its description in the server's registry, renewed every few seconds.

Each beat is kept for three intervals: a worker that stops beating (killed, its machine gone)
disappears from ``distqueue workers`` by itself within that time. A worker that stops cleanly
removes itself at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .errors import DistQueueError
from .registry import Registry

logger = logging.getLogger("distqueue.heartbeat")

DEFAULT_INTERVAL = 5.0
"""Seconds between two beats."""

TTL_BEATS = 3
"""A beat is kept this many intervals."""


def new_worker_id() -> str:
    """An id naming one worker process: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Heartbeat:
    """Beats ``describe()`` into ``registry`` every ``interval`` seconds, from a thread of its
    own, between :meth:`start` and :meth:`stop`. A beat that fails is logged and tried again at
    the next interval: the worker goes on working without it."""

    def __init__(
        self,
        registry: Registry,
        describe: Callable[[], Mapping[str, Any]],
        *,
        interval: float = DEFAULT_INTERVAL,
        worker_id: str | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"the heartbeat interval must be a positive number, not {interval!r}")
        self.registry = registry
        self.describe = describe
        self.interval = interval
        self.id = worker_id or new_worker_id()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Beat once; whether the registry took it."""
        try:
            description = {**self.describe(), "beat": round(time.time(), 3)}
            self.registry.beat(self.id, description, self.interval * TTL_BEATS)
        except DistQueueError as exc:
            logger.warning("heartbeat of worker %s failed: %s", self.id, exc)
            return False
        return True

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="distqueue-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        """Stop beating and remove the worker from the registry."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.registry.leave(self.id)
        except DistQueueError as exc:  # it disappears by itself when its beat runs out
            logger.warning("worker %s could not leave the registry: %s", self.id, exc)
