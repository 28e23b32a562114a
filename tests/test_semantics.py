"""The standard library's queue contract, run against every backend (memory, fakeredis, Redis).

Two handles with the same name stand for two processes sharing one queue; the multi-process
tests in test_multiprocess.py do the same with real processes.
"""

from __future__ import annotations

import functools
import queue as stdlib_queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from threads import run_in_thread, wait_until_blocked

import distqueue

MakeQueue = Callable[..., Any]


# -- order -------------------------------------------------------------------------------------


def test_fifo_queue_returns_items_in_the_order_they_were_put(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    for i in range(10):
        q.put(i)
    assert [q.get() for _ in range(10)] == list(range(10))


def test_lifo_queue_returns_the_last_item_first(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.LifoQueue)
    for i in range(10):
        q.put(i)
    assert [q.get() for _ in range(10)] == list(reversed(range(10)))


@pytest.mark.parametrize(
    "items",
    [
        [5, 1, 4, 2, 3, -7, 10**30, 2.5, -0.5, True],
        ["pear", "apple", "", "apples", "Zebra", "äpfel", "a\x00b", "a"],
        [b"\xff", b"", b"\x00", b"abc", b"ab"],
        [(2, "b"), (1, "z"), (2, "a"), (1, "a"), (0,), (1,)],
        [(1, (2, 3)), (1, (2,)), (0, (9, 9))],
        [[3, 1], [2], [2, 5], []],
    ],
    ids=["numbers", "strings", "bytes", "tuples", "nested-tuples", "lists"],
)
def test_priority_queue_orders_items_as_python_compares_them(
    make_queue: MakeQueue, items: list[Any]
) -> None:
    q = make_queue(distqueue.PriorityQueue)
    for item in items:
        q.put(item)
    got = [q.get() for _ in items]
    assert got == sorted(items)


def test_priority_queue_keeps_equal_items_first_in_first_out(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue)
    q.put((1, "late"))
    for i in range(5):
        q.put((0, {"task": i}))  # dicts: Python could not compare them
    q.put((1, "early"))
    got = [q.get() for _ in range(7)]
    assert got == [(0, {"task": i}) for i in range(5)] + [(1, "early"), (1, "late")]


def test_priority_queue_loses_nothing_when_items_cannot_be_compared(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue)
    # (1, {...}) entries are only compared with each other when the first one is taken
    items = [(0, "x"), (1, {"a": 1}), (1, {"b": 2}), (1, {"c": 3}), (0, "y"), (2, [1])]
    for item in items:
        q.put(item)
    got = [q.get(timeout=1) for _ in items]
    assert got == [(0, "x"), (0, "y"), (1, {"a": 1}), (1, {"b": 2}), (1, {"c": 3}), (2, [1])]
    assert q.empty()


def test_priority_queue_keeps_equal_numbers_first_in_first_out(make_queue: MakeQueue) -> None:
    import math

    q = make_queue(distqueue.PriorityQueue)
    for item in [3, 1, 2.5, 0.0, -0.0, 1.0, True, 0.5]:
        q.put(item)
    got = [q.get() for _ in range(8)]
    assert got == [0.0, -0.0, 0.5, 1, 1.0, True, 2.5, 3]
    assert [math.copysign(1, x) for x in got[:2]] == [1, -1]
    assert [type(x) for x in got[3:6]] == [int, float, bool]


def test_priority_queue_keeps_two_identical_items_as_two_entries(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue)
    q.put((1, "same"))
    q.put((1, "same"))
    assert q.qsize() == 2
    assert [q.get(), q.get()] == [(1, "same"), (1, "same")]


# -- put and get -------------------------------------------------------------------------------


def test_get_nowait_on_an_empty_queue_raises_the_stdlib_empty(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    with pytest.raises(stdlib_queue.Empty):
        q.get_nowait()
    with pytest.raises(distqueue.Empty):
        q.get(block=False)
    with pytest.raises(distqueue.Empty):
        q.get(timeout=0)


def test_put_nowait_on_a_full_queue_raises_the_stdlib_full(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 2)
    q.put_nowait("a")
    q.put_nowait("b")
    assert q.full()
    with pytest.raises(stdlib_queue.Full):
        q.put_nowait("c")
    with pytest.raises(distqueue.Full):
        q.put("c", timeout=0)
    assert q.qsize() == 2
    assert [q.get(), q.get()] == ["a", "b"]


def test_get_with_a_timeout_raises_empty_once_the_timeout_has_passed(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    started = time.monotonic()
    with pytest.raises(distqueue.Empty):
        q.get(timeout=0.2)
    assert time.monotonic() - started >= 0.19


def test_put_with_a_timeout_raises_full_once_the_timeout_has_passed(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 1)
    q.put(1)
    started = time.monotonic()
    with pytest.raises(distqueue.Full):
        q.put(2, timeout=0.2)
    assert time.monotonic() - started >= 0.19
    assert q.qsize() == 1


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan")])
def test_a_negative_timeout_is_a_value_error(make_queue: MakeQueue, bad: float) -> None:
    q = make_queue(distqueue.Queue, 1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=bad)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=bad)
    with pytest.raises(ValueError, match="non-negative"):
        q.join(timeout=bad)
    assert q.qsize() == 0


def test_block_false_ignores_the_timeout_as_the_stdlib_does(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    with pytest.raises(distqueue.Empty):
        q.get(block=False, timeout=-5)


def test_a_blocked_get_wakes_when_another_handle_puts(make_queue: MakeQueue) -> None:
    consumer = make_queue(distqueue.Queue, name="shared-get")
    producer = make_queue(distqueue.Queue, name="shared-get")
    thread, outcome = run_in_thread(lambda: consumer.get(timeout=30))
    wait_until_blocked(thread, consumer)
    producer.put({"hello": "world"})
    thread.join(10)
    assert outcome == [{"hello": "world"}]


def test_a_blocked_put_wakes_when_another_handle_frees_a_slot(make_queue: MakeQueue) -> None:
    producer = make_queue(distqueue.Queue, 1, name="shared-put")
    consumer = make_queue(distqueue.Queue, name="shared-put")
    producer.put("first")
    thread, outcome = run_in_thread(lambda: producer.put("second", timeout=30))
    wait_until_blocked(thread, producer)
    assert consumer.get() == "first"
    thread.join(10)
    assert outcome == [None]
    assert consumer.get(timeout=5) == "second"


def test_several_blocked_producers_all_get_in_as_slots_free(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 2, name="many-producers")
    q.put(0)
    q.put(1)
    producers = [make_queue(distqueue.Queue, 2, name="many-producers") for _ in range(3)]
    threads = [
        run_in_thread(functools.partial(p.put, 10 + i, timeout=30)) for i, p in enumerate(producers)
    ]
    wait_until_blocked([thread for thread, _ in threads], q, count=3)
    got = [q.get(timeout=10) for _ in range(5)]
    for thread, outcome in threads:
        thread.join(10)
        assert outcome == [None]
    assert sorted(got) == [0, 1, 10, 11, 12]
    assert q.qsize() == 0


def test_maxsize_is_never_exceeded_by_concurrent_producers(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 3, name="bounded")
    producers = [make_queue(distqueue.Queue, 3, name="bounded") for _ in range(4)]
    results: list[str] = []

    def fill(p: Any) -> None:
        for i in range(5):
            try:
                p.put_nowait(i)
                results.append("put")
            except distqueue.Full:
                results.append("full")

    threads = [threading.Thread(target=fill, args=(p,)) for p in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("put") == 3
    assert q.qsize() == 3


# -- tasks -------------------------------------------------------------------------------------


def test_join_returns_once_every_item_is_marked_done(make_queue: MakeQueue) -> None:
    producer = make_queue(distqueue.Queue, name="tasks")
    consumer = make_queue(distqueue.Queue, name="tasks")
    for i in range(3):
        producer.put(i)
    assert producer.unfinished_tasks == 3
    thread, outcome = run_in_thread(lambda: producer.join(timeout=30))
    for _ in range(3):
        consumer.get()
        wait_until_blocked(thread, producer)
        consumer.task_done()
    thread.join(10)
    assert outcome == [True]
    assert consumer.unfinished_tasks == 0


def test_join_on_a_queue_with_no_tasks_returns_at_once(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    assert q.join() is True


def test_join_with_a_timeout_returns_false_if_tasks_remain(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put(1)
    assert q.join(timeout=0.1) is False
    q.get()
    q.task_done()
    assert q.join(timeout=0.1) is True


def test_task_done_called_too_many_times_raises_value_error(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()
    assert q.unfinished_tasks == 0


# -- shutdown ----------------------------------------------------------------------------------


def test_after_shutdown_put_raises_and_get_drains_then_raises(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put(1)
    q.put(2)
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(distqueue.ShutDown):
        q.put(3)
    assert [q.get(), q.get()] == [1, 2]
    with pytest.raises(distqueue.ShutDown):
        q.get()
    with pytest.raises(distqueue.ShutDown):
        q.get_nowait()


def test_shutdown_immediate_drops_waiting_items_and_releases_join(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, name="immediate")
    other = make_queue(distqueue.Queue, name="immediate")
    for i in range(4):
        q.put(i)
    q.get()  # one is in hand, so one task stays unfinished
    thread, outcome = run_in_thread(lambda: other.join(timeout=30))
    wait_until_blocked(thread, other)
    q.shutdown(immediate=True)
    with pytest.raises(distqueue.ShutDown):
        q.get(timeout=5)
    assert q.qsize() == 0
    assert q.unfinished_tasks == 1
    q.task_done()
    thread.join(10)
    assert outcome == [True]


def test_shutdown_wakes_a_get_blocked_in_another_handle(make_queue: MakeQueue) -> None:
    blocked = [make_queue(distqueue.Queue, name="sd-get") for _ in range(3)]
    controller = make_queue(distqueue.Queue, name="sd-get")
    threads = [run_in_thread(functools.partial(b.get, timeout=30)) for b in blocked]
    wait_until_blocked([thread for thread, _ in threads], controller, count=3)
    controller.shutdown()
    for thread, outcome in threads:
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], distqueue.ShutDown), outcome
    assert all(b.is_shutdown for b in blocked)


def test_shutdown_wakes_a_put_blocked_in_another_handle(make_queue: MakeQueue) -> None:
    producer = make_queue(distqueue.Queue, 1, name="sd-put")
    controller = make_queue(distqueue.Queue, name="sd-put")
    producer.put(1)
    thread, outcome = run_in_thread(lambda: producer.put(2, timeout=30))
    wait_until_blocked(thread, producer)
    controller.shutdown()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], distqueue.ShutDown), outcome
    assert controller.get() == 1


def test_shutdown_wakes_a_blocked_priority_get(make_queue: MakeQueue) -> None:
    consumer = make_queue(distqueue.PriorityQueue, name="sd-prio")
    controller = make_queue(distqueue.PriorityQueue, name="sd-prio")
    thread, outcome = run_in_thread(lambda: consumer.get(timeout=30))
    wait_until_blocked(thread, consumer)
    controller.shutdown()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], distqueue.ShutDown), outcome


def test_shutdown_is_the_stdlib_class_where_the_stdlib_has_one() -> None:
    if hasattr(stdlib_queue, "ShutDown"):
        assert distqueue.ShutDown is stdlib_queue.ShutDown
    else:
        assert issubclass(distqueue.ShutDown, Exception)


# -- batches -----------------------------------------------------------------------------------


def test_put_many_and_get_many_keep_the_queue_order(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put_many(range(10))
    assert q.qsize() == 10
    assert q.unfinished_tasks == 10
    assert q.get_many(4) == [0, 1, 2, 3]
    assert q.get_many(100) == [4, 5, 6, 7, 8, 9]
    with pytest.raises(distqueue.Empty):
        q.get_many(3, block=False)


def test_get_many_on_a_lifo_and_a_priority_queue(make_queue: MakeQueue) -> None:
    lifo = make_queue(distqueue.LifoQueue)
    lifo.put_many([1, 2, 3])
    assert lifo.get_many(3) == [3, 2, 1]
    prio = make_queue(distqueue.PriorityQueue)
    prio.put_many([(3, "c"), (1, "a"), (2, "b")])
    assert prio.get_many(2) == [(1, "a"), (2, "b")]


def test_get_many_waits_for_the_first_item(make_queue: MakeQueue) -> None:
    consumer = make_queue(distqueue.Queue, name="batch-wait")
    producer = make_queue(distqueue.Queue, name="batch-wait")
    thread, outcome = run_in_thread(lambda: consumer.get_many(5, timeout=30))
    wait_until_blocked(thread, consumer)
    producer.put_many(["a", "b"])
    thread.join(10)
    assert len(outcome) == 1
    got = outcome[0]
    rest = consumer.get_many(5, block=False) if len(got) < 2 else []
    assert got + rest == ["a", "b"]


def test_put_many_is_all_or_nothing_against_maxsize(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 3)
    q.put(0)
    with pytest.raises(distqueue.Full):
        q.put_many([1, 2, 3], block=False)
    assert q.qsize() == 1
    q.put_many([1, 2])
    assert q.full()
    with pytest.raises(ValueError, match="never fit"):
        q.put_many(range(4))


def test_get_many_refuses_a_count_below_one(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    with pytest.raises(ValueError):
        q.get_many(0)


# -- the rest of the contract ------------------------------------------------------------------


def test_qsize_empty_and_full(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 2)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put("x")
    assert not q.empty() and not q.full() and q.qsize() == 1
    q.put("y")
    assert q.full() and q.qsize() == 2


def test_an_unbounded_queue_is_never_full(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 0)
    q.put_many(range(100))
    assert not q.full()


def test_simple_queue(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.SimpleQueue)
    assert q.empty()
    q.put(1)
    q.put_nowait(2)
    q.put(3, block=False, timeout=-1)  # ignored, as in the stdlib
    assert q.qsize() == 3
    assert [q.get(), q.get_nowait(), q.get(timeout=1)] == [1, 2, 3]
    with pytest.raises(distqueue.Empty):
        q.get(timeout=0.05)


def test_items_come_back_with_their_types(make_queue: MakeQueue) -> None:
    import datetime
    import decimal
    import uuid

    q = make_queue(distqueue.Queue)
    item = {
        "tuple": (1, "two", b"three"),
        1: [None, True, 2.5, float("inf")],
        (1, 2): {frozenset({1, 2}), "x"},
        "when": datetime.datetime(2024, 2, 29, 12, 30, tzinfo=datetime.timezone.utc),
        "money": decimal.Decimal("12.30"),
        "id": uuid.UUID(int=7),
        "big": 2**100,
    }
    q.put(item)
    got = q.get()
    assert got == item
    assert type(got["tuple"]) is tuple
    assert type(got["money"]) is decimal.Decimal


def test_the_memory_backend_passes_items_by_reference(backend: str, make_queue: MakeQueue) -> None:
    if backend != "memory":
        pytest.skip("shared backends copy items")
    q = make_queue(distqueue.Queue)
    item = [object()]
    q.put(item)
    assert q.get() is item


def test_an_unserializable_item_raises_type_error_and_writes_nothing(
    backend: str, make_queue: MakeQueue
) -> None:
    if backend == "memory":
        pytest.skip("the memory backend stores objects as they are")
    q = make_queue(distqueue.Queue)
    with pytest.raises(TypeError, match="object"):
        q.put(object())
    with pytest.raises(distqueue.SerializationError):
        q.put_many([1, object()])
    assert q.qsize() == 0
    assert q.unfinished_tasks == 0


def test_a_queue_is_a_context_manager(make_queue: MakeQueue) -> None:
    with make_queue(distqueue.Queue) as q:
        q.put(1)
        assert q.get() == 1


def test_two_handles_with_the_same_name_share_one_queue(make_queue: MakeQueue) -> None:
    a = make_queue(distqueue.Queue, name="same")
    b = make_queue(distqueue.Queue, name="same")
    a.put("via a")
    assert b.get(timeout=5) == "via a"


def test_queues_with_different_names_are_independent(make_queue: MakeQueue) -> None:
    a = make_queue(distqueue.Queue)
    b = make_queue(distqueue.Queue)
    a.put(1)
    assert b.empty()


def test_delete_removes_the_queue_for_every_handle(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, name="to-delete")
    q.put_many([1, 2])
    q.shutdown()
    q.delete()
    fresh = make_queue(distqueue.Queue, name="to-delete")
    assert (fresh.qsize(), fresh.unfinished_tasks, fresh.is_shutdown) == (0, 0, False)
    fresh.put(3)
    assert fresh.get() == 3


def test_a_batch_that_does_not_fit_yet_does_not_hold_up_a_put_that_does(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(distqueue.Queue, 3, name="batch-vs-one")
    batcher = make_queue(distqueue.Queue, 3, name="batch-vs-one")
    single = make_queue(distqueue.Queue, 3, name="batch-vs-one")
    q.put_many([1, 2, 3])
    batch_thread, batch_outcome = run_in_thread(lambda: batcher.put_many(["a", "b"], timeout=30))
    wait_until_blocked(batch_thread, q)
    single_thread, single_outcome = run_in_thread(lambda: single.put("x", timeout=30))
    wait_until_blocked([batch_thread, single_thread], q, count=2)
    assert q.get() == 1  # room for one: the single put goes in, the batch keeps waiting
    single_thread.join(3)  # well below the 5 s slice of a blocking wait
    assert single_outcome == [None]
    assert batch_thread.is_alive()
    assert [q.get(), q.get()] == [2, 3]
    batch_thread.join(10)
    assert batch_outcome == [None]
    assert q.get_many(3) == ["x", "a", "b"]


# -- the standard library's edges ------------------------------------------------------------
#
# Each expectation below is what CPython 3.13's queue module does for the same calls.


@pytest.mark.parametrize(
    ("maxsize", "fits"),
    [(2.5, 3), (1.0, 1), (True, 1), (0, None), (-1, None), (float("nan"), None)],
    ids=["2.5", "1.0", "True", "0", "-1", "nan"],
)
def test_maxsize_bounds_the_queue_as_the_stdlib_compares_it(
    make_queue: MakeQueue, maxsize: Any, fits: int | None
) -> None:
    q = make_queue(distqueue.Queue, maxsize)
    assert q.maxsize is maxsize
    for i in range(fits or 5):
        assert not q.full()
        q.put_nowait(i)
    if fits is None:
        assert not q.full()
        q.put(5, timeout=-1)  # unbounded: the timeout is never looked at
    else:
        assert q.full()
        with pytest.raises(distqueue.Full):
            q.put_nowait("one too many")
    assert q.qsize() == (fits or 6)


def test_an_infinite_maxsize_is_bounded_but_never_full(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, float("inf"))
    q.put_many(range(10))
    assert not q.full()
    with pytest.raises(ValueError, match="non-negative"):
        q.put(10, timeout=-1)  # bounded, so a blocking put checks its timeout


@pytest.mark.parametrize("maxsize", [None, "3", [3]], ids=repr)
def test_a_maxsize_that_is_no_number_is_a_type_error(make_queue: MakeQueue, maxsize: Any) -> None:
    with pytest.raises(TypeError, match="maxsize must be a number"):
        make_queue(distqueue.Queue, maxsize)


def test_a_negative_timeout_on_a_bounded_put_is_a_value_error_even_with_room(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(distqueue.Queue, 2)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.put_many([1], timeout=-1)
    q.put(1, block=False, timeout=-1)  # block=False: the timeout is not looked at
    q.put(2, block=False, timeout=-1)
    with pytest.raises(distqueue.Full):
        q.put(3, block=False, timeout=-1)
    assert q.qsize() == 2


def test_a_negative_timeout_on_an_unbounded_put_is_ignored(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put("a", timeout=-1)
    q.put("b", timeout=float("nan"))
    q.put_many(["c"], timeout=-5)
    assert q.get_many(3) == ["a", "b", "c"]


def test_a_negative_timeout_on_get_is_a_value_error_even_with_items_waiting(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(distqueue.Queue)
    q.put(1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get_many(1, timeout=-1)
    assert q.get(block=False, timeout=-1) == 1


def test_after_shutdown_the_shutdown_check_comes_before_the_timeout_check(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(distqueue.Queue, 1)
    q.put("left")
    q.shutdown()
    with pytest.raises(distqueue.ShutDown):
        q.put("x", timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)  # not empty yet: get() still checks its timeout
    assert q.get() == "left"
    with pytest.raises(distqueue.ShutDown):
        q.get(timeout=-1)


def test_task_done_after_an_immediate_shutdown_counts_only_items_in_hand(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(distqueue.Queue)
    q.put_many([1, 2, 3])
    assert q.get() == 1
    q.shutdown(immediate=True)
    assert q.unfinished_tasks == 1  # the two dropped items count as done
    q.task_done()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()
    assert q.join(timeout=0) is True


@pytest.mark.parametrize("timeout", [float("inf"), 1e300, threading.TIMEOUT_MAX])
def test_an_endless_timeout_waits_like_none(make_queue: MakeQueue, timeout: float) -> None:
    q = make_queue(distqueue.Queue, 1, name="endless")
    other = make_queue(distqueue.Queue, 1, name="endless")
    assert q.join(timeout=timeout) is True
    q.put("a", timeout=timeout)
    joiner, joined = run_in_thread(lambda: q.join(timeout=timeout))
    putter, put = run_in_thread(lambda: q.put("b", timeout=timeout))
    wait_until_blocked([joiner, putter], q, count=2)
    assert other.get(timeout=timeout) == "a"
    putter.join(10)
    assert put == [None]
    assert other.get(timeout=timeout) == "b"
    other.task_done()
    other.task_done()
    joiner.join(10)
    assert joined == [True]


def test_simple_queue_get_with_a_negative_timeout_is_a_value_error(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.SimpleQueue)
    q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    assert q.get(block=False, timeout=-1) == 1


# -- counts, leases, names: the same answer on every backend -----------------------------------


@pytest.mark.parametrize(("n", "error"), [(True, TypeError), (2.0, TypeError), (0, ValueError)])
def test_get_many_refuses_a_count_that_is_not_a_positive_int(
    make_queue: MakeQueue, n: Any, error: type[Exception]
) -> None:
    q = make_queue(distqueue.Queue)
    q.put(1)
    with pytest.raises(error):
        q.get_many(n)
    with pytest.raises(error):
        q.get_messages(n)
    assert q.qsize() == 1


def test_get_many_takes_a_huge_count_as_all_there_is(make_queue: MakeQueue) -> None:
    for cls in (distqueue.Queue, distqueue.LifoQueue, distqueue.PriorityQueue):
        q = make_queue(cls)
        q.put_many([1, 2])
        assert sorted(q.get_many(2**63)) == [1, 2]
        q.put(3)
        assert [m.item for m in q.get_messages(2**100)] == [3]


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0, -1, 366 * 86400])
def test_a_visibility_timeout_must_be_finite_and_at_most_a_year(
    make_queue: MakeQueue, bad: float
) -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        make_queue(distqueue.Queue, visibility_timeout=bad)
    q = make_queue(distqueue.Queue, visibility_timeout=365 * 86400)
    q.put(1)
    message = q.get_message()
    with pytest.raises(ValueError, match="delay"):
        message.nack(delay=float("inf"))
    with pytest.raises(ValueError, match="seconds"):
        message.extend(float("inf"))
    assert message.ack() is True


def test_after_delete_every_old_handle_uses_a_fresh_queue(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, 2, name="deleted")
    other = make_queue(distqueue.Queue, 2, name="deleted")
    q.put_many([1, 2])
    q.shutdown()
    other.delete()
    for handle in (q, other):
        assert (handle.qsize(), handle.unfinished_tasks, handle.is_shutdown) == (0, 0, False)
    q.put("after")
    assert other.get(timeout=5) == "after"
    other.task_done()
    assert q.join(timeout=5) is True


def test_delete_wakes_a_blocked_producer_and_join(
    make_queue: MakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distqueue.backends.connection as connection

    monkeypatch.setattr(connection, "BLOCK_SLICE", 600.0)  # only a wake-up ends these in time
    name = f"deleted-wakes-{uuid.uuid4().hex}"
    q = make_queue(distqueue.Queue, 1, name=name)
    q.put("x")
    joiner = make_queue(distqueue.Queue, 1, name=name)
    join_thread, joined = run_in_thread(lambda: joiner.join(timeout=300))
    wait_until_blocked(join_thread, joiner)
    q.delete()
    join_thread.join(60)
    assert joined == [True]

    q.put("y")
    producer = make_queue(distqueue.Queue, 1, name=name)
    put_thread, put = run_in_thread(lambda: producer.put("z", timeout=300))
    wait_until_blocked(put_thread, producer)
    q.delete()
    put_thread.join(60)
    assert put == [None]
    assert q.get_nowait() == "z"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (distqueue.Queue, distqueue.LifoQueue),
        (distqueue.LifoQueue, distqueue.PriorityQueue),
        (distqueue.PriorityQueue, distqueue.Queue),
    ],
    ids=["fifo-lifo", "lifo-priority", "priority-fifo"],
)
def test_one_name_cannot_be_two_kinds_of_queue(
    request: pytest.FixtureRequest, backend: str, make_queue: MakeQueue, first: Any, second: Any
) -> None:
    name = f"one-kind-{uuid.uuid4().hex}"
    make_queue(first, name=name).put((1, "x"))
    with pytest.raises(ValueError, match="already exists"):
        # refused when opened (memory) or at its first call (Redis: the server knows the kind)
        make_queue(second, name=name).put((2, "y"))


def test_on_memory_a_simple_queue_name_is_not_also_a_queue(backend: str) -> None:
    if backend != "memory":
        pytest.skip("memory only: on Redis a SimpleQueue is a FIFO list like Queue")
    simple: distqueue.SimpleQueue[int] = distqueue.SimpleQueue(url="memory://", name="simple-x")
    with pytest.raises(ValueError, match="SimpleQueue"):
        distqueue.Queue(url="memory://", name="simple-x")
    fifo: distqueue.Queue[int] = distqueue.Queue(url="memory://", name="fifo-x")
    with pytest.raises(ValueError, match="fifo queue"):
        distqueue.SimpleQueue(url="memory://", name="fifo-x")
    simple.put(1)
    fifo.put(2)
    assert (simple.get(), fifo.get()) == (1, 2)


# -- priority order where Python has none ----------------------------------------------------

NAN = float("nan")


def test_nan_is_the_largest_number_on_every_backend(make_queue: MakeQueue) -> None:
    import math
    from decimal import Decimal

    q = make_queue(distqueue.PriorityQueue)
    for item in [3, NAN, 1, float("inf"), Decimal("NaN"), 2, -float("inf")]:
        q.put(item)
    got = [q.get() for _ in range(7)]
    assert got[:5] == [-float("inf"), 1, 2, 3, float("inf")]
    assert math.isnan(got[5]) and type(got[5]) is float  # NaNs are equal: first in, first out
    assert type(got[6]) is Decimal and got[6].is_nan()


def test_behind_a_nan_priority_the_next_element_decides(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue)
    items = [(NAN, "b"), (1, "x"), (NAN, "a"), (float("inf"), "z"), (NAN, "a", 0)]
    q.put_many(items)
    got = [q.get() for _ in items]
    assert [item[1:] for item in got] == [("x",), ("z",), ("a",), ("a", 0), ("b",)]


def test_values_python_cannot_compare_go_by_type_on_every_backend(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue)
    items = ["b", 2, (0,), b"x", 1, "a", [0], None, (1, {"k": 1}), (1, "s"), (1, {"k": 0})]
    for item in items:
        q.put(item)
    got = [q.get() for _ in items]
    expected = [1, 2, b"x", "a", "b", (0,), (1, "s"), (1, {"k": 1}), (1, {"k": 0}), [0], None]
    assert got == expected


class _Unlucky:
    """A value whose comparison fails with an error of its own (not a missing order)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __lt__(self, other: Any) -> bool:
        raise RuntimeError("comparison failed")

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


@pytest.mark.parametrize(
    "waiting", [[3, 1, 2], [(3, "c"), (1, "a"), (2, "b")]], ids=["bare", "tuples"]
)
def test_on_memory_a_put_whose_comparison_raises_adds_nothing(
    backend: str, make_queue: MakeQueue, waiting: list[Any]
) -> None:
    if backend != "memory":
        pytest.skip("memory only: a shared backend orders by an encoding, never by __lt__")
    q = make_queue(distqueue.PriorityQueue)
    q.put_many(waiting)
    bad = _Unlucky(0) if type(waiting[0]) is int else (1, _Unlucky(0))
    with pytest.raises(RuntimeError, match="comparison failed"):
        q.put(bad)
    with pytest.raises(RuntimeError, match="comparison failed"):
        q.put_many([waiting[0], bad, waiting[1]])
    assert (q.qsize(), q.unfinished_tasks) == (3, 3)
    assert [q.get() for _ in range(3)] == sorted(waiting)
    assert q.empty()


def test_on_memory_a_decimal_nan_no_longer_breaks_a_put(
    backend: str, make_queue: MakeQueue
) -> None:
    from decimal import Decimal

    q = make_queue(distqueue.PriorityQueue)
    q.put_many([Decimal(2), Decimal(1)])
    q.put(Decimal("NaN"))
    q.put_many([Decimal(0), Decimal("sNaN")])
    assert (q.qsize(), q.unfinished_tasks) == (5, 5)
    got = [q.get() for _ in range(5)]
    assert got[:3] == [0, 1, 2]
    assert all(value.is_nan() for value in got[3:])


# -- a waiting batch is not starved ------------------------------------------------------------


def test_a_waiting_batch_lets_at_most_maxsize_items_pass_it(
    request: pytest.FixtureRequest, backend: str, make_queue: MakeQueue
) -> None:
    q = make_queue(distqueue.Queue, 3, name="fair")
    q.put_many([0, 1, 2])
    batcher = make_queue(distqueue.Queue, 3, name="fair")
    batch_thread, batch_outcome = run_in_thread(lambda: batcher.put_many("abc", timeout=30))
    wait_until_blocked(batch_thread, q)

    def produce(tag: str) -> None:
        handle = make_queue(distqueue.Queue, 3, name="fair")
        for i in range(30):
            handle.put(f"{tag}{i}", timeout=30)

    producers = [run_in_thread(functools.partial(produce, tag)) for tag in ("x", "y")]
    got = []
    for _ in range(9):
        got.append(q.get(timeout=10))
        # Let the single producers fill the room again if they may: a starving batch would
        # then never find room for three.
        refill_deadline = time.monotonic() + 0.5
        while q.qsize() < 3 and time.monotonic() < refill_deadline:
            time.sleep(0.005)
    q.shutdown(immediate=True)
    batch_thread.join(10)
    for thread, _ in producers:
        thread.join(10)
    assert batch_outcome == [None]
    assert got[:3] == [0, 1, 2]
    assert [item for item in got if item in ("a", "b", "c")] == ["a", "b", "c"], got


# -- SimpleQueue -------------------------------------------------------------------------------


def test_blocked_simple_queue_gets_each_wake_for_one_put(make_queue: MakeQueue) -> None:
    consumers = [make_queue(distqueue.SimpleQueue, name="simple-wake") for _ in range(3)]
    producer = make_queue(distqueue.SimpleQueue, name="simple-wake")
    threads = [run_in_thread(functools.partial(c.get, timeout=30)) for c in consumers]
    wait_until_blocked([thread for thread, _ in threads], producer, count=3)
    for i in range(3):
        producer.put(i)
    for thread, _ in threads:
        thread.join(10)
    assert sorted(outcome[0] for _, outcome in threads) == [0, 1, 2]
    with pytest.raises(distqueue.Empty):
        producer.get(timeout=0.05)


def test_on_memory_simple_queue_put_never_waits_for_a_lock(backend: str) -> None:
    # A signal handler that puts runs on the thread it interrupted, possibly in the middle of
    # a put or get of the same queue: a put that took the queue's lock would wait for itself.
    if backend != "memory":
        pytest.skip("memory only: the lock lives in this process")
    q: distqueue.SimpleQueue[int] = distqueue.SimpleQueue(url="memory://")
    store = q._backend._store  # type: ignore[attr-defined]

    def put_while_holding_the_lock() -> None:
        with store.lock:
            q.put(1)
            q.put_nowait(2)

    thread, outcome = run_in_thread(put_while_holding_the_lock)
    thread.join(5)
    assert outcome == [None], "put() waited for a lock its own thread held"
    assert [q.get_nowait(), q.get(timeout=1)] == [1, 2]
