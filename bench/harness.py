"""What every benchmark shares: a redis-server of its own, interleaved timing, the printed table.

Timing: a *trial* runs ``count`` operations and returns the seconds spent on them (setup such as
preloading items or emptying the server is done inside the trial, outside the timed part).
:func:`compare` warms both sides up once, then runs ``REPETITIONS`` *pairs*: the distqueue
trial and the baseline trial back to back, swapping which goes first. The ratio it reports is
the median of the pairs' ratios: both sides of a pair meet the same spell of the machine (a
shared, noisy machine changes speed from one second to the next), and the median ignores the
pairs a disturbance hit on one side only. The ratio of each side's best time is printed too:
it is what this harness reported before, and it swings more (the two bests may come from
different spells).
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
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
"""Timed pairs of repetitions (one of each side) per comparison."""

Trial = Callable[[int], float]
"""Run ``count`` operations; return the seconds the operations themselves took."""

_TESTS_DIR = Path(__file__).resolve().parent.parent / "tests"


class ServerUnavailable(Exception):
    """The redis-server a benchmark needs could not be found or started."""


# -- servers -------------------------------------------------------------------------------------


def _servers_module() -> ModuleType:
    """``tests/servers.py``, the same server management the test suite uses."""
    try:
        return tests_module("servers")
    except ImportError as exc:  # tests/servers.py needs pytest, a dev dependency
        raise ServerUnavailable(
            f"cannot import tests/servers.py ({exc}); install the dev extras: "
            "pip install -e '.[dev]'"
        ) from exc


def tests_module(name: str) -> ModuleType:
    """The test suite's helper module ``tests/NAME.py``, imported as the tests import it (a
    top-level module). The tests folder goes first on the path: ``bench/`` may be there too
    (the workers' jobs live in it) with a module of the same name (``cluster``)."""
    folder = str(_TESTS_DIR)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    module = sys.modules.get(name)
    if (
        module is not None
        and Path(getattr(module, "__file__", "") or "").resolve().parent != _TESTS_DIR
    ):
        del sys.modules[name]  # bench/NAME.py, imported as a top-level module by mistake
    return importlib.import_module(name)


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
    """The times of distqueue and of the baseline for one operation, pair by pair."""

    operation: str
    unit: str  # "ops/s" or "items/s"
    count: int  # operations (or items) per repetition
    distqueue_seconds: tuple[float, ...]
    baseline_seconds: tuple[float, ...]  # the same length: one pair per repetition
    target: float

    @property
    def distqueue_rate(self) -> float:
        """The median of distqueue's repetitions."""
        return self.count / statistics.median(self.distqueue_seconds)

    @property
    def baseline_rate(self) -> float:
        """The median of the baseline's repetitions."""
        return self.count / statistics.median(self.baseline_seconds)

    @property
    def ratio(self) -> float:
        """distqueue's rate as a fraction of the baseline's (1.0 is as fast, 0.5 half as
        fast): the median of the pairs' ratios."""
        return statistics.median(
            base / ours
            for ours, base in zip(self.distqueue_seconds, self.baseline_seconds, strict=True)
        )

    @property
    def best_ratio(self) -> float:
        """The ratio of each side's best repetition."""
        return min(self.baseline_seconds) / min(self.distqueue_seconds)

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
    """Time ``distqueue`` and ``baseline`` in pairs, back to back, swapping which goes first."""
    warm_up = max(1, count // 10)
    distqueue(warm_up)
    baseline(warm_up)
    ours: list[float] = []
    base: list[float] = []
    for repetition in range(repetitions):
        if repetition % 2 == 0:
            ours.append(distqueue(count))
            base.append(baseline(count))
        else:
            base.append(baseline(count))
            ours.append(distqueue(count))
    return Comparison(operation, unit, count, tuple(ours), tuple(base), target)


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
            f"{c.best_ratio:.2f}x",
        ]
        for c in comparisons
    ]
    print_table(["operation", "distqueue", baseline_name, "ratio", "target", "best/best"], rows)
    counts = sorted({len(c.distqueue_seconds) for c in comparisons})
    print(
        f"(rates: medians of {'/'.join(map(str, counts))} repetitions per side, run in pairs; "
        "ratio = median of the pairs' distqueue rate / baseline rate; best/best = the ratio of "
        "each side's best repetition)"
    )
