"""The standard library's queue contract, run against every backend (memory, fakeredis, Redis).

Two handles with the same name stand for two processes sharing one queue; the multi-process
tests in test_multiprocess.py do the same with real processes.
"""

from __future__ import annotations

import queue as stdlib_queue
import threading
import time
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
    wait_until_blocked(thread)
    producer.put({"hello": "world"})
    thread.join(10)
    assert outcome == [{"hello": "world"}]


def test_a_blocked_put_wakes_when_another_handle_frees_a_slot(make_queue: MakeQueue) -> None:
    producer = make_queue(distqueue.Queue, 1, name="shared-put")
    consumer = make_queue(distqueue.Queue, name="shared-put")
    producer.put("first")
    thread, outcome = run_in_thread(lambda: producer.put("second", timeout=30))
    wait_until_blocked(thread)
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
        run_in_thread(lambda p=p, i=i: p.put(10 + i, timeout=30)) for i, p in enumerate(producers)
    ]
    for thread, _ in threads:
        wait_until_blocked(thread, 0.1)
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
        wait_until_blocked(thread, 0.05)
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
    wait_until_blocked(thread)
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
    threads = [run_in_thread(lambda b=b: b.get(timeout=30)) for b in blocked]
    for thread, _ in threads:
        wait_until_blocked(thread, 0.1)
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
    wait_until_blocked(thread)
    controller.shutdown()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], distqueue.ShutDown), outcome
    assert controller.get() == 1


def test_shutdown_wakes_a_blocked_priority_get(make_queue: MakeQueue) -> None:
    consumer = make_queue(distqueue.PriorityQueue, name="sd-prio")
    controller = make_queue(distqueue.PriorityQueue, name="sd-prio")
    thread, outcome = run_in_thread(lambda: consumer.get(timeout=30))
    wait_until_blocked(thread)
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
    wait_until_blocked(thread)
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
    wait_until_blocked(batch_thread, 0.2)
    single_thread, single_outcome = run_in_thread(lambda: single.put("x", timeout=30))
    wait_until_blocked(single_thread, 0.2)
    assert q.get() == 1  # room for one: the single put goes in, the batch keeps waiting
    single_thread.join(3)  # well below the 5 s slice of a blocking wait
    assert single_outcome == [None]
    assert batch_thread.is_alive()
    assert [q.get(), q.get()] == [2, 3]
    batch_thread.join(10)
    assert batch_outcome == [None]
    assert q.get_many(3) == ["x", "a", "b"]
