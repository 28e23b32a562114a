"""Limits on taking from a queue: a rate, a concurrency, a pause; on every backend.

Checks are about counts (how many items a consumer could take), with time only as a bound:
"not before" a limit lets go, and a generous guard against hangs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from threads import run_in_thread, wait_until_blocked

import distqueue
from distqueue.backends.base import Limits

MakeQueue = Callable[..., Any]
HANG = 10.0


def test_limits_are_kept_with_the_queue(make_queue: MakeQueue) -> None:
    q = make_queue(name="limited")
    other = make_queue(name="limited")
    assert other.limits() == Limits()
    q.set_limits(rate=5, per=2.5, concurrency=3)
    assert other.limits() == Limits(rate=5, per=2.5, concurrency=3)
    q.set_limits()
    assert other.limits() == Limits()


def test_a_rate_limit_holds_back_takes_beyond_it(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.set_limits(rate=3, per=60)
    q.put_many(range(10))
    assert q.get_many(10, block=False) == [0, 1, 2]
    with pytest.raises(distqueue.Empty):
        q.get_nowait()
    with pytest.raises(distqueue.Empty):
        q.get(timeout=0.1)
    assert q.qsize() == 7  # still waiting: held back, not gone
    q.set_limits()
    assert q.get_nowait() == 3


def test_a_consumer_at_the_rate_limit_waits_until_the_period_lets_it(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    q.set_limits(rate=2, per=0.4)
    q.put_many(range(3))
    start = time.monotonic()
    assert q.get_many(3) == [0, 1]
    assert q.get(timeout=HANG) == 2
    assert time.monotonic() - start >= 0.4 - 0.002


def test_a_concurrency_limit_caps_the_leases_held_at_once(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.set_limits(concurrency=2)
    q.put_many(range(4))
    messages = q.get_messages(4, block=False)
    assert [m.item for m in messages] == [0, 1]
    with pytest.raises(distqueue.Empty):
        q.get_message(block=False)
    thread, outcome = run_in_thread(lambda: q.get_message(timeout=30).item)
    wait_until_blocked(thread, q)
    messages[0].ack()  # one slot frees up: the waiting consumer gets it
    thread.join(HANG)
    assert outcome == [2]


def test_a_pause_holds_every_consumer_back_until_it_ends(make_queue: MakeQueue) -> None:
    q = make_queue(name="paused")
    other = make_queue(name="paused")
    q.put("x")
    start = time.monotonic()
    other.pause(0.3)
    with pytest.raises(distqueue.Empty):
        q.get_nowait()
    q.put("y")  # puts go on during a pause
    assert q.get(timeout=HANG) == "x"
    assert time.monotonic() - start >= 0.3 - 0.002
    assert q.get_nowait() == "y"


def test_a_shorter_pause_does_not_cut_a_longer_one(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("x")
    q.pause(60)
    q.pause(0)
    with pytest.raises(distqueue.Empty):
        q.get(timeout=0.05)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rate": 0}, ValueError),
        ({"rate": 1.5}, TypeError),
        ({"rate": True}, TypeError),
        ({"rate": 1, "per": 0}, ValueError),
        ({"rate": 1, "per": float("inf")}, ValueError),
        ({"concurrency": -1}, ValueError),
    ],
)
def test_bad_limits_are_refused(
    make_queue: MakeQueue, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    q = make_queue()
    with pytest.raises(error):
        q.set_limits(**kwargs)
    assert q.limits() == Limits()
    with pytest.raises(ValueError):
        q.pause(-1)
