"""Helpers for the asyncio tests: wait for a signal of the backend, never for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from threads import _blocked_clients

GUARD = 20.0
"""Seconds any one wait of a test may last before the test fails instead of hanging."""


async def until(condition: Callable[[], Any], what: str, timeout: float = GUARD) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not so after {timeout} s")
        await asyncio.sleep(0.002)


async def until_waiting(q: Any, count: int) -> None:
    """Return once ``count`` tasks wait on ``q`` (in its line; on Redis also once the shared
    wait, or the producers' waits, are blocked on the server)."""
    backend = q._backend
    await until(lambda: backend.waiting_tasks >= count, f"{count} task(s) waiting on {q!r}")
    if backend.shared:
        url = q.url
        await until(lambda: _blocked_clients(url) >= 1, f"a blocked client on the server of {q!r}")


def server_blocked(q: Any) -> int:
    """The blocked clients of ``q``'s Redis server(s) right now."""
    return _blocked_clients(q.url)
