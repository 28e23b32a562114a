"""Checking the time and rate arguments of the queue classes: delays, due times,
de-duplication windows and limits, each turned into the backend's plain form or refused with
``TypeError`` or ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from .backends.base import Limits, PutOptions

__all__ = ["check_limits", "check_seconds", "put_options"]


def check_seconds(value: Any, what: str, *, positive: bool = False) -> float:
    """``value`` as a finite number of seconds ``>= 0`` (``> 0`` when ``positive``).

    Raises ``TypeError`` for a non-number (a bool included), ``ValueError`` for a negative,
    zero (when ``positive``), infinite or NaN value.
    """
    if type(value) is bool or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be a finite number of seconds {bound}, not {value!r}")
    return seconds


def put_options(delay: Any, at: Any, dedup_key: Any, dedup_for: Any) -> PutOptions | None:
    """The options of a put, or ``None`` when it is a plain one.

    ``at`` must be a ``datetime`` that knows its time zone (a naive one is ``ValueError``:
    there is no telling which clock it means); ``delay`` and ``at`` exclude each other;
    ``dedup_key`` (a non-empty str) needs ``dedup_for`` (seconds > 0) and the other way round.
    """
    when: float | None = None
    if at is not None:
        if delay is not None:
            raise ValueError("give either delay or at, not both")
        if not isinstance(at, datetime.datetime):
            raise TypeError(f"at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(
                "at must be a datetime with a time zone (datetime.now(timezone.utc), or "
                "one from zoneinfo); a naive datetime names no instant"
            )
        when = at.timestamp()
    seconds = None if delay is None else check_seconds(delay, "delay")
    if dedup_key is None:
        if dedup_for is not None:
            raise ValueError("dedup_for needs a dedup_key")
        if when is None and not seconds:
            return None
        return PutOptions(delay=seconds, at=when)
    if not isinstance(dedup_key, str) or not dedup_key:
        raise TypeError(f"dedup_key must be a non-empty str, not {dedup_key!r}")
    if dedup_for is None:
        raise ValueError("a dedup_key needs dedup_for: the seconds its window lasts")
    window = check_seconds(dedup_for, "dedup_for", positive=True)
    return PutOptions(delay=seconds, at=when, dedup_key=dedup_key, dedup_for=window)


def check_limits(rate: Any, per: Any, concurrency: Any) -> Limits:
    """The limits of :meth:`distqueue.Queue.set_limits`, checked: counts are ints >= 1 (or
    ``None``), ``per`` seconds > 0."""
    for value, what in ((rate, "rate"), (concurrency, "concurrency")):
        if value is None:
            continue
        if type(value) is bool or not isinstance(value, int):
            raise TypeError(f"{what} must be an int or None, not {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{what} must be at least 1, not {value!r}")
    seconds = check_seconds(per, "per", positive=True)
    return Limits(rate=rate, per=seconds if rate is not None else 1.0, concurrency=concurrency)
