"""How the command line prints: tables for people, JSON for scripts, a progress bar on stderr."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

_CELL_MAX = 60


def cell(value: Any) -> str:
    """A value as a table shows it: one line, at most 60 characters."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.2f}"
    else:
        text = str(value)
    text = text.replace("\r", " ").replace("\n", " ")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= _CELL_MAX else text[: _CELL_MAX - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Print ``rows`` under ``headers``, columns aligned; numbers to the right."""
    out = out or sys.stdout
    cells = [[cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    numeric = [
        bool(rows) and all(isinstance(row[i], (int, float)) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    for row in cells:
        print(line(row), file=out)


def print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str), file=out or sys.stdout)


def age(seconds: float | None) -> str | None:
    """A duration as people read it: 42s, 3m05s, 2h10m, 4d03h."""
    if seconds is None:
        return None
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


class Progress:
    """A progress bar on stderr for long bulk operations, shown when stderr is a terminal or
    when asked for (``force``); redrawn at most ten times a second."""

    def __init__(self, what: str, *, force: bool = False, out: TextIO | None = None) -> None:
        self.what = what
        self.out = out or sys.stderr
        self.shown = force or self.out.isatty()
        self._drawn = 0.0
        self._any = False

    def __call__(self, done: int, total: int) -> None:
        if not self.shown:
            return
        now = time.monotonic()
        if done < total and now - self._drawn < 0.1:
            return
        self._drawn = now
        width = 30
        filled = width if total <= 0 else min(width, width * done // total)
        bar = "#" * filled + "-" * (width - filled)
        self.out.write(f"\r{self.what} [{bar}] {done}/{total}")
        self.out.flush()
        self._any = True

    def finish(self) -> None:
        if self.shown and self._any:
            self.out.write("\n")
            self.out.flush()
