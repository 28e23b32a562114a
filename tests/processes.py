"""Worker processes for the tests: start ``python -m distqueue worker``, watch what they record.

Used by test_worker.py and test_chaos.py (their fixtures are in conftest.py).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

import distqueue

GUARD = 60.0
"""Seconds any single wait may last before the test fails instead of hanging."""

TESTS_DIR = Path(__file__).resolve().parent

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = GUARD,
    show: Callable[[], object] | None = None,
) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail naming
    ``what`` and what ``show`` returns (else the last value seen) when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = show() if show is not None else value
            pytest.fail(f"waited {timeout} s for {what}; last seen: {seen!r}")
        time.sleep(0.05)


def fresh_name(prefix: str = "worker") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def distqueue_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "distqueue", *args]


class Workers:
    """``distqueue worker`` processes of one test, each logging to a file of its own.

    The processes find :mod:`taskfns` on ``PYTHONPATH``, may run its functions as Executor tasks
    (``$DISTQUEUE_ALLOW``), run in the test's temp dir, and record to the Redis lists named
    ``record_key`` at ``record_url``. Those still running when the test
    ends are killed.
    """

    def __init__(self, directory: Path, record_url: str) -> None:
        self.directory = directory
        self.record_url = record_url
        self.record_key = fresh_name("record")
        paths = [str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "RECORD_URL": record_url,
            "RECORD_KEY": self.record_key,
            "DISTQUEUE_ALLOW": "taskfns",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def start(
        self, url: str, queue: str, *options: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``distqueue worker --url URL --queue QUEUE OPTIONS...``."""
        log = self.directory / f"worker-{len(self.processes)}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                distqueue_command("worker", "--url", url, "--queue", queue, *options),
                env={**self.env, **(env or {})},
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.processes.append(process)
        self._logs[process.pid] = log
        return process

    def start_command(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``distqueue ARGS...`` (any command), logging to a file of its own."""
        log = self.directory / f"command-{len(self.processes)}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                distqueue_command(*args),
                env=self.env,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.processes.append(process)
        self._logs[process.pid] = log
        return process

    def log(self, process: subprocess.Popen[bytes]) -> str:
        """What ``process`` wrote to stderr so far."""
        return self._logs[process.pid].read_text("utf-8", "replace")

    def wait_for_log(self, process: subprocess.Popen[bytes], text: str) -> None:
        wait_until(lambda: text in self.log(process), f"{text!r} in the worker's log")

    def wait_exit(self, process: subprocess.Popen[bytes], timeout: float = GUARD) -> int:
        """The exit status of ``process``; fails if it is still running after ``timeout``."""
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"worker {process.pid} still running after {timeout} s; its log:\n"
                + self.log(process)
            )

    def stop(self, process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and return the exit status."""
        process.send_signal(signum)
        return self.wait_exit(process)

    def cli(self, *args: str) -> str:
        """Run ``distqueue ARGS...``; its stdout. Fails (with its stderr) unless it exits 0."""
        done = subprocess.run(
            distqueue_command(*args),
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=GUARD,
            check=False,
        )
        assert done.returncode == 0, f"distqueue {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


class Records:
    """What the :mod:`taskfns` recording functions appended under one key."""

    def __init__(self, url: str, key: str) -> None:
        self.key = key
        self.client = redis.Redis.from_url(url)

    def items(self) -> list[Any]:
        """The items :func:`taskfns.record` recorded, in order."""
        raws: list[Any] = self.client.lrange(self.key, 0, -1)
        return [ast.literal_eval(raw.decode()) for raw in raws]

    def starts(self) -> list[tuple[int, Any]]:
        """``(pid, item)`` for each start of work in :func:`taskfns.record_start_end`, in order."""
        return self._pairs("start")

    def ends(self) -> list[tuple[int, Any]]:
        """``(pid, item)`` for each end of work in :func:`taskfns.record_start_end`, in order."""
        return self._pairs("end")

    def _pairs(self, which: str) -> list[tuple[int, Any]]:
        pairs = (json.loads(raw) for raw in self.client.lrange(f"{self.key}:{which}", 0, -1))
        return [(pid, item) for pid, item in pairs]

    def close(self) -> None:
        self.client.close()


def settled(q: distqueue.Queue[Any]) -> tuple[int, int, int]:
    """(waiting, in flight, unfinished)."""
    return q.qsize(), q.in_flight(), q.unfinished_tasks
