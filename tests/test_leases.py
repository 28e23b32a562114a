"""Leases: at-least-once delivery, redelivery, acknowledgement and dead letters, on every backend.

"A consumer that dies" is a queue object closed without acknowledging: closing stops the
heartbeat that renews its leases, exactly as the death of its process does. The SIGKILL version
runs in test_chaos.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import distqueue

MakeQueue = Callable[..., Any]


def test_without_a_visibility_timeout_get_removes_the_item(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put("x")
    assert q.get() == "x"
    assert q.in_flight() == 0
    assert q.unfinished_tasks == 1


def test_get_leases_and_task_done_acknowledges(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, visibility_timeout=10)
    q.put("x")
    assert q.get() == "x"
    assert (q.qsize(), q.in_flight(), q.unfinished_tasks) == (0, 1, 1)
    q.task_done()
    assert (q.qsize(), q.in_flight(), q.unfinished_tasks) == (0, 0, 0)
    assert q.join(timeout=1)
    with pytest.raises(ValueError, match="too many"):
        q.task_done()


def test_an_item_held_by_a_dead_consumer_is_delivered_again(make_queue: MakeQueue) -> None:
    dead = make_queue(distqueue.Queue, visibility_timeout=0.3, name="redeliver")
    alive = make_queue(distqueue.Queue, visibility_timeout=0.3, name="redeliver")
    dead.put_many(["a", "b"])
    assert dead.get() == "a"
    dead.close()  # dies holding "a": no task_done, no more heartbeat
    time.sleep(0.5)
    assert alive.get(timeout=10) == "a"  # redelivered ahead of "b", once the lease ran out
    message = alive.get_message(timeout=10)
    assert message.item == "b"
    alive.task_done()
    message.ack()
    assert alive.unfinished_tasks == 0
    assert alive.in_flight() == 0


def test_a_slow_live_consumer_keeps_its_lease(make_queue: MakeQueue) -> None:
    slow = make_queue(distqueue.Queue, visibility_timeout=0.3, name="slow")
    other = make_queue(distqueue.Queue, visibility_timeout=0.3, name="slow")
    slow.put("work")
    assert slow.get() == "work"
    with pytest.raises(distqueue.Empty):
        other.get(timeout=1.2)  # four lease lengths: the heartbeat kept it
    slow.task_done()
    assert other.unfinished_tasks == 0


def test_a_message_is_acknowledged_once(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put({"n": 1})
    message = q.get_message()
    assert (message.item, message.deliveries) == ({"n": 1}, 1)
    assert message.ack() is True
    assert message.ack() is False
    assert q.unfinished_tasks == 0


def test_nack_gives_the_item_back_ahead_of_the_others(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put_many(["first", "second"])
    message = q.get_message()
    assert message.nack() is True
    again = q.get_message(timeout=1)
    assert (again.item, again.deliveries) == ("first", 2)
    again.ack()
    assert q.get_message(timeout=1).item == "second"


def test_nack_with_a_delay_holds_the_item_back(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put("later")
    q.get_message().nack(delay=0.4)
    with pytest.raises(distqueue.Empty):
        q.get_message(timeout=0.1)
    message = q.get_message(timeout=10)
    assert (message.item, message.deliveries) == ("later", 2)


def test_extend_renews_a_held_lease_only(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, visibility_timeout=5)
    q.put(1)
    message = q.get_message()
    assert message.extend(10) is True
    message.ack()
    assert message.extend() is False


def test_the_lease_block_acknowledges_on_success(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put("job")
    with q.lease(timeout=1) as item:
        assert item == "job"
    assert (q.qsize(), q.in_flight(), q.unfinished_tasks) == (0, 0, 0)


def test_the_lease_block_gives_the_item_back_on_an_exception(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put("job")
    with pytest.raises(RuntimeError), q.lease(retry_delay=0) as item:
        raise RuntimeError(item)
    again = q.get_message(timeout=1)
    assert (again.item, again.deliveries) == ("job", 2)


def test_an_item_delivered_too_often_becomes_a_dead_letter(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, max_deliveries=2)
    q.put_many(["poison", "fine"])
    for _ in range(2):
        message = q.get_message(timeout=1)
        assert message.item == "poison"
        message.nack()
    assert q.get_message(timeout=1).item == "fine"  # the poison item is skipped
    [letter] = q.dead_letters()
    assert (letter.item, letter.deliveries) == ("poison", 2)
    assert "max_deliveries 2" in letter.error
    assert q.qsize() == 0
    assert q.unfinished_tasks == 1  # "fine" is still in hand; "poison" counts as done


def test_dead_letters_can_be_requeued_and_purged(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, max_deliveries=1)
    q.put_many(["a", "b"])
    for _ in range(2):
        q.get_message(timeout=1).nack()
    with pytest.raises(distqueue.Empty):
        q.get_message(timeout=0)
    assert [d.item for d in q.dead_letters()] == ["a", "b"]
    assert q.unfinished_tasks == 0
    assert q.requeue_dead(limit=1) == 1
    assert q.unfinished_tasks == 1
    message = q.get_message(timeout=1)
    assert (message.item, message.deliveries) == ("a", 1)
    message.ack()
    assert q.purge_dead() == 1
    assert q.dead_letters() == []


def test_a_redelivered_item_keeps_its_priority(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue, visibility_timeout=10)
    q.put_many([(2, "two"), (1, "one"), (3, "three")])
    first = q.get_message()
    assert first.item == (1, "one")
    second = q.get_message()
    first.nack()
    assert q.get() == (1, "one")
    second.nack()
    assert q.get() == (2, "two")
    assert q.get() == (3, "three")


def test_redelivery_in_a_priority_queue_of_plain_numbers(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.PriorityQueue)
    q.put_many([5, 3, 4])
    message = q.get_message()
    assert message.item == 3
    q.put(1)
    message.nack()
    assert [q.get(), q.get(), q.get(), q.get()] == [1, 3, 4, 5]


def test_a_plain_get_takes_a_redelivered_item_too(make_queue: MakeQueue) -> None:
    leasing = make_queue(distqueue.Queue, name="mixed")
    plain = make_queue(distqueue.Queue, name="mixed")
    leasing.put("x")
    leasing.get_message().nack()
    assert plain.get(timeout=1) == "x"
    assert plain.in_flight() == 0
    plain.task_done()
    assert plain.join(timeout=1)


def test_a_late_ack_before_the_item_is_delivered_again_still_counts(
    make_queue: MakeQueue,
) -> None:
    q = make_queue(distqueue.Queue, name="late-ack")
    holder = make_queue(distqueue.Queue, visibility_timeout=0.2, name="late-ack")
    q.put("slow")
    message = holder.get_message()
    holder._leases.close()  # stop renewing, as a stalled process would
    q.put("next")
    # once its lease ends, the item waits again (ahead of "next")
    deadline = time.monotonic() + 5
    while q.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert q.qsize() == 2, "the lapsed lease is counted as waiting again"
    # nobody took it yet: the late acknowledgement counts, once, and takes it out of the queue
    assert message.ack() is True
    assert message.ack() is False
    assert q.get(timeout=1) == "next"
    assert q.qsize() == 0
    assert q.unfinished_tasks == 1


def test_a_stale_holder_cannot_settle_an_item_delivered_again(make_queue: MakeQueue) -> None:
    stale = make_queue(distqueue.Queue, name="fenced")
    fresh = make_queue(distqueue.Queue, name="fenced")
    fresh.put("job")
    old = stale.get_message()
    stale._leases.close()  # paused past its deadline: no renewal
    assert old.extend(0.2) is True  # still its own delivery: its lease now ends soon
    new = fresh.get_message(timeout=5)
    assert (new.item, new.deliveries) == ("job", 2)
    assert new.id != old.id
    # the stale holder wakes up: nothing it does touches the new delivery
    assert old.ack() is False
    assert old.nack() is False
    assert old.extend(60) is False
    assert old.reject("stale") is False
    assert fresh.in_flight() == 1
    assert fresh.dead_letters() == []
    assert fresh.unfinished_tasks == 1
    assert fresh.join(timeout=0) is False
    # the new holder's work stands
    assert new.ack() is True
    assert fresh.unfinished_tasks == 0
    assert fresh.join(timeout=1)


def test_task_done_for_a_lease_that_ran_out_raises_lease_lost(make_queue: MakeQueue) -> None:
    slow = make_queue(distqueue.Queue, visibility_timeout=0.3, name="lost")
    other = make_queue(distqueue.Queue, visibility_timeout=30, name="lost")
    slow.put("job")
    assert slow.get() == "job"
    slow._leases.close()  # paused past the visibility timeout
    assert other.get(timeout=5) == "job"  # delivered again once the lease ran out
    with pytest.raises(distqueue.LeaseLost):
        slow.task_done()
    assert other.unfinished_tasks == 1
    other.task_done()
    assert other.join(timeout=1)


def test_a_plain_consumer_gets_an_item_whose_lease_ran_out(make_queue: MakeQueue) -> None:
    leasing = make_queue(distqueue.Queue, visibility_timeout=0.3, name="lapsed-plain")
    plain = make_queue(distqueue.Queue, name="lapsed-plain")
    leasing.put_many(["a", "b"])
    assert leasing.get_many(2) == ["a", "b"]
    leasing.close()  # the leasing consumer dies; only plain consumers are left
    # a blocked plain get() wakes when the earliest lease runs out, with no other call
    got = [plain.get(timeout=5), plain.get(timeout=5)]
    assert sorted(got) == ["a", "b"]
    assert (plain.qsize(), plain.in_flight(), plain.unfinished_tasks) == (0, 0, 2)
    plain.task_done()
    plain.task_done()
    assert plain.join(timeout=1)


def test_qsize_and_join_see_an_item_whose_lease_ran_out(make_queue: MakeQueue) -> None:
    leasing = make_queue(distqueue.PriorityQueue, visibility_timeout=0.2, name="lapsed-size")
    watcher = make_queue(distqueue.PriorityQueue, name="lapsed-size")
    leasing.put((1, "x"))
    leasing.get()
    leasing.close()
    assert watcher.join(timeout=0.1) is False
    deadline = time.monotonic() + 5
    while watcher.qsize() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (watcher.qsize(), watcher.in_flight()) == (1, 0)
    assert watcher.get_nowait() == (1, "x")
    watcher.task_done()
    assert watcher.join(timeout=1)


def test_join_waits_for_redelivered_items(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, visibility_timeout=0.2, name="join-lease")
    q.put("x")
    holder = make_queue(distqueue.Queue, visibility_timeout=0.2, name="join-lease")
    holder.get()
    holder.close()
    assert q.join(timeout=0.3) is False
    assert q.get(timeout=5) == "x"
    q.task_done()
    assert q.join(timeout=1)


def test_get_many_leases_each_item(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue, visibility_timeout=10)
    q.put_many(range(5))
    assert q.get_many(3) == [0, 1, 2]
    assert q.in_flight() == 3
    for _ in range(3):
        q.task_done()
    assert q.in_flight() == 0
    assert q.unfinished_tasks == 2


def test_bad_lease_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        distqueue.Queue(visibility_timeout=0)
    with pytest.raises(ValueError, match="max_deliveries"):
        distqueue.Queue(max_deliveries=0)


def test_reject_makes_a_dead_letter_with_the_reason(make_queue: MakeQueue) -> None:
    q = make_queue(distqueue.Queue)
    q.put_many(["bad", "good"])
    message = q.get_message()
    assert message.reject("cannot parse it") is True
    assert message.ack() is False
    [letter] = q.dead_letters()
    assert (letter.item, letter.deliveries, letter.error) == ("bad", 1, "cannot parse it")
    assert q.unfinished_tasks == 1
    assert q.get() == "good"
