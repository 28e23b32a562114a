"""What every benchmark shares: a redis-server of its own, interleaved timing, the printed table.

Timing: a *trial* runs ``count`` operations and returns the seconds spent on them (setup such as
preloading items or emptying the server is done inside the trial, outside the timed part).
:func:`compare` warms both sides up once, then runs the distqueue trial and the baseline trial
alternately, ``REPETITIONS`` times each, swapping which goes first, and keeps the best time of
each side: the best is the run least disturbed by the machine, and interleaving makes any slow
spell of the machine hit both sides alike.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

REPETITIONS = 5
"""Timed repetitions of each side; the best one counts."""

Trial = Callable[[int], float]
"""Run ``count`` operations; return the seconds the operations themselves took."""

_TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"


class ServerUnavailable(Exception):
    """The redis-server a benchmark needs could not be found or started."""


# -- servers -------------------------------------------------------------------------------------


def _servers_module() -> ModuleType:
    """``tests/servers.py``, the same server management the test suite uses."""
    if str(_TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(_TESTS_DIR))
    try:
        return importlib.import_module("servers")
    except ImportError as exc:  # tests/servers.py needs pytest, a dev dependency
        raise ServerUnavailable(
            f"cannot import tests/servers.py ({exc}); install the dev extras: "
            "pip install -e '.[dev]'"
        ) from exc


@dataclass(frozen=True)
class RedisEndpoint:
    """Where the benchmark's own redis-server listens."""

    host: str
    port: int
    url: str

    def raw_client(self) -> redis.Redis:
        """A plain redis-py client, as the baselines use."""
        return redis.Redis(host=self.host, port=self.port)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisEndpoint]:
    """Start a redis-server on a free port of 127.0.0.1 in a temp dir; stop it on the way out.

    Raises :class:`ServerUnavailable` when redis-server is not installed or does not start.
    """
    servers = _servers_module()
    import pytest  # importable: tests/servers.py imported it above

    # require_binary() reports a missing binary the way tests do: pytest.skip, or pytest.fail
    # under CI=true. Outside pytest both are just exceptions carrying the message.
    try:
        binary = servers.require_binary("redis-server")
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise ServerUnavailable(str(exc.msg)) from None
    with tempfile.TemporaryDirectory(prefix="distqueue-bench-") as directory:
        try:
            server: Any = servers.RedisServer(binary, Path(directory))
        except (OSError, RuntimeError) as exc:
            raise ServerUnavailable(f"redis-server did not start: {exc}") from exc
        try:
            yield RedisEndpoint("127.0.0.1", server.port, server.url)
        finally:
            try:
                server.stop()
            except subprocess.TimeoutExpired:
                server.kill()


# -- timing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The best times of distqueue and of the baseline for one operation."""

    operation: str
    unit: str  # "ops/s" or "items/s"
    count: int  # operations (or items) per repetition
    distqueue_seconds: float
    baseline_seconds: float
    target: float

    @property
    def distqueue_rate(self) -> float:
        return self.count / self.distqueue_seconds

    @property
    def baseline_rate(self) -> float:
        return self.count / self.baseline_seconds

    @property
    def ratio(self) -> float:
        """distqueue's rate as a fraction of the baseline's: 1.0 is as fast, 0.5 half as fast."""
        return self.baseline_seconds / self.distqueue_seconds

    @property
    def meets_target(self) -> bool:
        return self.ratio >= self.target


def compare(
    operation: str,
    count: int,
    distqueue: Trial,
    baseline: Trial,
    *,
    target: float,
    unit: str = "ops/s",
    repetitions: int = REPETITIONS,
) -> Comparison:
    """Time ``distqueue`` and ``baseline`` interleaved; keep the best repetition of each."""
    warm_up = max(1, count // 10)
    distqueue(warm_up)
    baseline(warm_up)
    best_distqueue = best_baseline = math.inf
    for repetition in range(repetitions):
        if repetition % 2 == 0:
            best_distqueue = min(best_distqueue, distqueue(count))
            best_baseline = min(best_baseline, baseline(count))
        else:
            best_baseline = min(best_baseline, baseline(count))
            best_distqueue = min(best_distqueue, distqueue(count))
    return Comparison(operation, unit, count, best_distqueue, best_baseline, target)


# -- output --------------------------------------------------------------------------------------


def print_title(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``headers``; the first column left-aligned, the others right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = (str(cell) for cell in cells)
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers))
    print(line(["-" * width for width in widths]))
    for row in rows:
        print(line(row))


def _rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def print_comparisons(comparisons: Sequence[Comparison], baseline_name: str) -> None:
    """The table every ratio benchmark prints: operation, both rates, ratio, target."""
    rows = [
        [
            c.operation,
            _rate(c.distqueue_rate, c.unit),
            _rate(c.baseline_rate, c.unit),
            f"{c.ratio:.2f}x",
            f">= {c.target:.1f}x {'ok' if c.meets_target else 'BELOW'}",
        ]
        for c in comparisons
    ]
    print_table(["operation", "distqueue", baseline_name, "ratio", "target"], rows)
    print(
        f"(best of {REPETITIONS} interleaved repetitions per side; "
        "ratio = distqueue rate / baseline rate)"
    )
