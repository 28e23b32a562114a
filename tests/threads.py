"""Calls run in a thread of the test, to be blocked, woken and inspected."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``target`` in a thread; the list receives its result or its exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # the test inspects whatever happened
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_blocked(thread: threading.Thread, seconds: float = 0.3) -> None:
    """Give a thread time to reach its blocking call, and check it is still blocked there."""
    thread.join(seconds)
    assert thread.is_alive(), "the call returned instead of blocking"
