"""Delayed delivery (``put(delay=...)``, ``put(at=...)``) and de-duplication, on every backend.

Delays are checked as "never early" against the client's clock around the calls, with a
millisecond of slack for the server's clock resolution, and "not later than a generous bound"
only as a guard against hangs.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from threads import run_in_thread, wait_until_blocked

import distqueue

MakeQueue = Callable[..., Any]

SLACK = 0.002  # the server counts in whole ms
HANG = 10.0  # far beyond any delay here: only a guard against hanging


def wait_until_due(q: Any, bound: float = HANG) -> None:
    """Return once no item of ``q`` is scheduled any more (time itself is the signal)."""
    deadline = time.monotonic() + bound
    while q.scheduled():
        assert time.monotonic() < deadline, "scheduled items never came due"
        time.sleep(0.01)


def test_a_delayed_item_is_never_handed_out_early(make_queue: MakeQueue) -> None:
    q = make_queue()
    start = time.monotonic()
    q.put("later", delay=0.3)
    assert q.get(timeout=HANG) == "later"
    assert time.monotonic() - start >= 0.3 - SLACK


def test_a_delayed_item_is_counted_as_scheduled_not_waiting(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("later", delay=60)
    q.put("now")
    assert (q.qsize(), q.scheduled(), q.unfinished_tasks) == (1, 1, 2)
    assert q.get_nowait() == "now"
    with pytest.raises(distqueue.Empty):
        q.get_nowait()
    with pytest.raises(distqueue.Empty):
        q.get(timeout=0.05)
    assert q.empty()


def test_a_put_at_a_time_with_a_zone_is_due_then(make_queue: MakeQueue) -> None:
    q = make_queue()
    start = time.monotonic()
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.3)
    q.put("at", at=at.astimezone(datetime.timezone(datetime.timedelta(hours=-5))))
    assert q.scheduled() == 1
    assert q.get(timeout=HANG) == "at"
    assert time.monotonic() - start >= 0.3 - SLACK - 0.05  # two clocks read: client, server


def test_a_time_already_past_puts_at_once(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("past", at=datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc))
    assert (q.qsize(), q.scheduled()) == (1, 0)
    assert q.get_nowait() == "past"


def test_a_waiting_consumer_wakes_when_an_item_put_later_comes_due(make_queue: MakeQueue) -> None:
    q = make_queue()
    thread, outcome = run_in_thread(lambda: (q.get(timeout=30), time.monotonic()))
    wait_until_blocked(thread, q)
    put_at = time.monotonic()
    q.put("wake", delay=0.3)
    thread.join(HANG)
    assert not thread.is_alive(), "the consumer slept through the due time"
    item, got_at = outcome[0]
    assert item == "wake"
    assert got_at - put_at >= 0.3 - SLACK


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (distqueue.Queue, ["plain", "a", "b", "c"]),
        (distqueue.LifoQueue, ["c", "b", "a", "plain"]),
        (distqueue.PriorityQueue, ["a", "b", "c", "plain"]),
    ],
)
def test_due_items_join_the_queue_in_its_kind_s_order(
    make_queue: MakeQueue, cls: Any, expected: list[str]
) -> None:
    q = make_queue(cls)
    q.put("plain")
    q.put_many(["a", "b"], delay=0.2)
    q.put("c", delay=0.25)
    wait_until_due(q)
    assert [q.get_nowait() for _ in range(4)] == expected


def test_a_later_item_due_first_is_handed_out_first(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("second", delay=0.4)
    q.put("first", delay=0.1)
    assert q.get(timeout=HANG) == "first"
    assert q.get(timeout=HANG) == "second"


def test_delayed_puts_never_wait_for_room_and_may_overfill(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 1)
    q.put("full")
    q.put("later", block=False, delay=0.1)
    wait_until_due(q)
    assert q.qsize() == 2 and q.full()
    with pytest.raises(distqueue.Full):
        q.put_nowait("no room")
    assert [q.get_nowait(), q.get_nowait()] == ["full", "later"]


def test_join_waits_for_scheduled_items(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("later", delay=0.2)
    assert q.join(timeout=0) is False
    assert q.get(timeout=HANG) == "later"
    q.task_done()
    assert q.join(timeout=0) is True


def test_after_a_shutdown_scheduled_items_still_come_due(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("later", delay=0.2)
    q.shutdown()
    with pytest.raises(distqueue.ShutDown):
        q.put("refused", delay=0.1)
    with pytest.raises(distqueue.Empty):
        q.get_nowait()  # not yet due, and due later: not the end of the queue
    assert q.get(timeout=HANG) == "later"
    with pytest.raises(distqueue.ShutDown):
        q.get(timeout=HANG)


def test_an_immediate_shutdown_drops_scheduled_items_as_done(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("now")
    q.put_many(["later", "later"], delay=60)
    q.shutdown(immediate=True)
    assert (q.qsize(), q.scheduled(), q.unfinished_tasks) == (0, 0, 0)
    assert q.join(timeout=0) is True
    with pytest.raises(distqueue.ShutDown):
        q.get(timeout=HANG)


def test_a_delayed_item_can_be_leased(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, visibility_timeout=30)
    start = time.monotonic()
    q.put({"job": 1}, delay=0.2)
    message = q.get_message(timeout=HANG)
    assert message.item == {"job": 1}
    assert time.monotonic() - start >= 0.2 - SLACK
    message.ack()
    assert q.join(timeout=0)


def test_delete_forgets_scheduled_items(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put("later", delay=60)
    q.delete()
    assert (q.qsize(), q.scheduled(), q.unfinished_tasks) == (0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"delay": -1}, ValueError),
        ({"delay": float("nan")}, ValueError),
        ({"delay": float("inf")}, ValueError),
        ({"delay": True}, TypeError),
        ({"delay": "1"}, TypeError),
        ({"at": datetime.datetime(2030, 1, 1)}, ValueError),  # naive: which clock?
        ({"at": 1.5}, TypeError),
        ({"delay": 1, "at": datetime.datetime.now(datetime.timezone.utc)}, ValueError),
        ({"dedup_key": "k"}, ValueError),
        ({"dedup_for": 5}, ValueError),
        ({"dedup_key": "", "dedup_for": 5}, TypeError),
        ({"dedup_key": "k", "dedup_for": 0}, ValueError),
    ],
)
def test_bad_time_arguments_are_refused_before_anything_is_put(
    make_queue: MakeQueue, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    q = make_queue()
    with pytest.raises(error):
        q.put("x", **kwargs)
    with pytest.raises(error):
        q.put_many(["x"], **kwargs)
    assert (q.qsize(), q.scheduled(), q.unfinished_tasks) == (0, 0, 0)


# -- de-duplication --------------------------------------------------------------------------


def test_a_second_put_with_the_same_key_within_the_window_puts_nothing(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    assert q.put("a", dedup_key="k", dedup_for=60) is True
    assert q.put("b", dedup_key="k", dedup_for=60) is False
    assert q.put("c", dedup_key="other", dedup_for=60) is True
    assert q.put_many(["d", "e"], dedup_key="k", dedup_for=60) is False
    assert q.put("plain") is None
    assert [q.get_nowait() for _ in range(q.qsize())] == ["a", "c", "plain"]
    assert q.unfinished_tasks == 3


def test_a_key_is_free_again_once_its_window_ends(make_queue: MakeQueue) -> None:
    q = make_queue()
    assert q.put("a", dedup_key="k", dedup_for=0.1) is True
    deadline = time.monotonic() + HANG
    while not q.put("b", dedup_key="k", dedup_for=0.1):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [q.get_nowait(), q.get_nowait()] == ["a", "b"]


def test_a_scheduled_item_holds_its_key_until_it_is_due(make_queue: MakeQueue) -> None:
    q = make_queue()
    assert q.put("a", delay=0.5, dedup_key="k", dedup_for=0.01) is True
    time.sleep(0.05)  # the window alone has ended by now; the due time has not
    assert q.put("b", dedup_key="k", dedup_for=0.01) is False
    assert q.scheduled() == 1 and q.qsize() == 0


def test_a_put_refused_for_room_does_not_take_the_key(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 1)
    q.put("full")
    with pytest.raises(distqueue.Full):
        q.put("a", block=False, dedup_key="k", dedup_for=60)
    q.get_nowait()
    assert q.put("a", block=False, dedup_key="k", dedup_for=60) is True


def test_exactly_one_of_many_concurrent_producers_puts_a_key(make_queue: MakeQueue) -> None:
    name = f"dedup-{time.monotonic_ns()}"
    handles = [make_queue(distqueue.Queue, name=name) for _ in range(8)]
    start = threading.Barrier(len(handles))
    results: list[bool] = []
    lock = threading.Lock()

    def produce(q: Any, i: int) -> None:
        start.wait()
        put = q.put(i, dedup_key="once", dedup_for=60)
        with lock:
            results.append(put)

    threads = [threading.Thread(target=produce, args=(q, i)) for i, q in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    assert sorted(results) == [False] * 7 + [True]
    assert handles[0].qsize() == 1 and handles[0].unfinished_tasks == 1


def test_consumers_that_waited_before_an_item_was_scheduled_wake_when_it_is_due(
    make_queue: MakeQueue,
) -> None:
    """Two consumers wait; an item is scheduled; the one woken to learn its due time (the one
    that waited longest) gives up before it: the other still wakes when the item is due, not
    at the end of its own wait slice (5 s on Redis)."""
    name = f"two-waiters-{time.monotonic_ns()}"
    q = make_queue(name=name)
    patient = make_queue(name=name)
    leaver = make_queue(name=name)
    leaving, _ = run_in_thread(lambda: leaver.get(timeout=1.0))
    wait_until_blocked(leaving, q)
    waiting, outcome = run_in_thread(lambda: (patient.get(timeout=30), time.monotonic()))
    wait_until_blocked([leaving, waiting], q, count=2)
    put_at = time.monotonic()
    q.put("due", delay=2.0)
    waiting.join(HANG)
    item, got_at = outcome[0]
    assert item == "due"
    assert got_at - put_at >= 2.0 - SLACK
    assert got_at - put_at < 3.5, got_at - put_at  # not the end of the patient's slice
