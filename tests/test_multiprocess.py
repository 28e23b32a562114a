"""Queues shared by real processes on a real redis-server.

Each test starts child processes with the "spawn" start method and hands them queue objects: a
queue on a redis:// URL pickles as "open the same queue again", so parent and children use one
queue. The tests check what crosses between processes: nothing lost, nothing duplicated, the
order each queue class promises, the bound of ``maxsize``, ``join()`` and ``task_done()``, and
``shutdown()`` waking callers blocked in other processes.

Children report through a second queue. The functions they run are at the top of this module,
so that a spawned process can import them. Durations are never asserted; every wait has a
generous limit (``GUARD``) so that a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import distqueue

pytestmark = [pytest.mark.slow, pytest.mark.redis]

SPAWN = multiprocessing.get_context("spawn")

GUARD = 60.0
"""Seconds any single wait may last before the test fails instead of hanging."""

SETTLE = 0.5
"""Seconds given to children that reported "ready" to reach their blocking call."""

Item = tuple[int, int]  # (producer id, sequence number within that producer)


# -- what the child processes run -------------------------------------------------------------


def put_items(work: distqueue.Queue[Any], items: list[Any]) -> None:
    """Put ``items`` one by one, in order."""
    with work:
        for item in items:
            work.put(item)


def put_batches(
    work: distqueue.Queue[Item], producer_id: int, batches: int, size: int, pause: float
) -> None:
    """Put ``batches`` batches of ``size`` items (producer_id, seq) with put_many().

    Pauses ``pause`` seconds after every fifth batch: in bursts, a bounded queue fills up (so
    producers block) and then runs empty (so consumers block).
    """
    with work:
        for batch in range(batches):
            work.put_many([(producer_id, batch * size + i) for i in range(size)])
            if batch % 5 == 4:
                time.sleep(pause)


def consume_until_shutdown(
    work: distqueue.Queue[Any], results: distqueue.Queue[Any], consumer_id: int, batch: int
) -> None:
    """Get items (get() or get_many(batch)) and mark each done until ShutDown; report them."""
    got: list[Any] = []
    with work, results:
        while True:
            try:
                items = (
                    [work.get(timeout=GUARD)] if batch == 1 else work.get_many(batch, timeout=GUARD)
                )
            except distqueue.ShutDown:
                break
            for item in items:
                got.append(item)
                work.task_done()
        results.put(("done", consumer_id, got))


def get_items(work: distqueue.Queue[Any], results: distqueue.Queue[Any], count: int) -> None:
    """Get ``count`` items and report them in the order they came out."""
    with work, results:
        results.put([work.get(timeout=GUARD) for _ in range(count)])


def drain_slowly(
    work: distqueue.Queue[Any], results: distqueue.Queue[Any], count: int, pause: float
) -> None:
    """Get ``count`` items, pausing after each; report them and qsize() after each get."""
    got: list[Any] = []
    sizes: list[int] = []
    with work, results:
        for _ in range(count):
            got.append(work.get(timeout=GUARD))
            sizes.append(work.qsize())
            time.sleep(pause)
        results.put((got, sizes))


def record_then_mark_done(
    work: distqueue.Queue[Any], processed: distqueue.Queue[Any], pause: float
) -> None:
    """For each item until ShutDown: work on it, record it in ``processed``, then task_done()."""
    with work, processed:
        while True:
            try:
                item = work.get(timeout=GUARD)
            except distqueue.ShutDown:
                return
            time.sleep(pause)
            processed.put(item)
            work.task_done()


def join_then_count(
    work: distqueue.Queue[Any], processed: distqueue.Queue[Any], results: distqueue.Queue[Any]
) -> None:
    """join() the work queue, then report its result and how many items were processed."""
    with work, processed, results:
        joined = work.join(timeout=GUARD)
        results.put((joined, processed.qsize()))


def task_done_once_too_often(work: distqueue.Queue[Any], results: distqueue.Queue[Any]) -> None:
    """Get one item, mark it done twice; report what the second task_done() raised."""
    with work, results:
        work.get(timeout=GUARD)
        work.task_done()
        try:
            work.task_done()
        except ValueError as exc:
            results.put(("ValueError", str(exc)))
        else:
            results.put(("no error", ""))


def blocked_call(
    work: distqueue.Queue[Any],
    results: distqueue.Queue[Any],
    child_id: int,
    method: str,
    args: tuple[Any, ...],
) -> None:
    """Report "ready", call ``work.<method>(*args)`` and report how it ended."""
    with work, results:
        results.put(("ready", child_id))
        try:
            value = getattr(work, method)(*args)
        except Exception as exc:
            results.put(("raised", child_id, type(exc).__name__))
        else:
            results.put(("returned", child_id, value))


# -- the test process's side ------------------------------------------------------------------


class Processes:
    """The queues and child processes of one test, and the queue the children report to."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queues: list[distqueue.Queue[Any]] = []
        self.children: list[multiprocessing.process.BaseProcess] = []
        self.results: distqueue.Queue[Any] = self.queue(distqueue.Queue)

    def queue(self, cls: type[distqueue.Queue[Any]], maxsize: int = 0) -> distqueue.Queue[Any]:
        """A new queue on the Redis server, with a name of its own."""
        q = cls(maxsize, url=self.url, name=f"mp-{uuid.uuid4().hex}")
        self.queues.append(q)
        return q

    def start(self, target: Callable[..., None], *args: Any) -> multiprocessing.process.BaseProcess:
        child = SPAWN.Process(
            target=target, args=args, name=f"{target.__name__}-{len(self.children)}", daemon=True
        )
        child.start()
        self.children.append(child)
        return child

    def failed_children(self) -> dict[str, int]:
        return {c.name: c.exitcode for c in self.children if c.exitcode not in (None, 0)}

    def reports(self, count: int, timeout: float = GUARD) -> list[Any]:
        """The next ``count`` reports; fails early if a child died, or when time runs out."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                got.append(self.results.get(timeout=0.2))
            except distqueue.Empty:
                failed = self.failed_children()
                if failed:
                    pytest.fail(f"children failed (exit codes {failed}); reports so far: {got!r}")
                if time.monotonic() > deadline:
                    pytest.fail(f"expected {count} reports within {timeout} s, got {got!r}")
        return got

    def finish(
        self, children: Iterable[multiprocessing.process.BaseProcess], timeout: float = GUARD
    ) -> None:
        """Wait for ``children`` to exit with code 0; fails early if any child of the test died."""
        children = list(children)
        deadline = time.monotonic() + timeout
        while any(child.is_alive() for child in children):
            failed = self.failed_children()
            if failed:
                pytest.fail(f"children failed (exit codes): {failed}")
            if time.monotonic() > deadline:
                running = [child.name for child in children if child.is_alive()]
                pytest.fail(f"still running after {timeout} s: {running}")
            for child in children:
                child.join(0.1)
        exits = {child.name: child.exitcode for child in children if child.exitcode != 0}
        assert not exits, f"children failed (exit codes): {exits}"

    def close(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
                child.join(5)
            if child.is_alive():
                child.kill()
                child.join(5)
        for q in self.queues:
            q.close()


@pytest.fixture
def mp(redis_url: str) -> Iterator[Processes]:
    processes = Processes(redis_url)
    yield processes
    processes.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


def assert_each_item_once(got: list[Any], expected: list[Any]) -> None:
    counts = Counter(got)
    missing = sorted(set(expected) - set(counts))
    duplicated = sorted(item for item, n in counts.items() if n > 1)
    unexpected = sorted(set(counts) - set(expected))
    assert not (missing or duplicated or unexpected), (
        f"expected each of {len(expected)} items once, got {len(got)} items: "
        f"missing {missing[:20]} ({len(missing)}), duplicated {duplicated[:20]} "
        f"({len(duplicated)}), unexpected {unexpected[:20]} ({len(unexpected)})"
    )


def assert_per_producer_order(stream: list[Item], who: str) -> None:
    last: dict[int, int] = {}
    for position, (producer_id, seq) in enumerate(stream):
        previous = last.get(producer_id, -1)
        assert seq > previous, (
            f"{who} got item {seq} of producer {producer_id} after item {previous}, at "
            f"position {position}: ...{stream[max(0, position - 10) : position + 1]!r}"
        )
        last[producer_id] = seq


# -- several producers and consumers ----------------------------------------------------------


def test_producer_and_consumer_processes_lose_and_duplicate_nothing(mp: Processes) -> None:
    producers, consumers, per_producer = 3, 3, 200
    work = mp.queue(distqueue.Queue)
    consuming = [mp.start(consume_until_shutdown, work, mp.results, c, 1) for c in range(consumers)]
    producing = [
        mp.start(put_items, work, [(p, seq) for seq in range(per_producer)])
        for p in range(producers)
    ]
    mp.finish(producing)
    assert work.join(timeout=GUARD), f"{work.unfinished_tasks} tasks still unfinished"
    work.shutdown()
    reports = mp.reports(consumers)
    mp.finish(consuming)

    streams = {consumer_id: got for _, consumer_id, got in reports}
    assert sorted(streams) == list(range(consumers))
    everything = [item for got in streams.values() for item in got]
    assert_each_item_once(
        everything, [(p, s) for p in range(producers) for s in range(per_producer)]
    )
    for consumer_id, got in streams.items():
        assert_per_producer_order(got, f"consumer {consumer_id}")
    assert work.qsize() == 0
    assert work.unfinished_tasks == 0


def test_put_many_and_get_many_across_processes_lose_and_duplicate_nothing(
    mp: Processes,
) -> None:
    producers, consumers, batches, size = 3, 3, 20, 10
    work = mp.queue(distqueue.Queue, 25)  # room for two batches and a bit: producers block
    consuming = [mp.start(consume_until_shutdown, work, mp.results, c, 7) for c in range(consumers)]
    producing = [mp.start(put_batches, work, p, batches, size, 0.05) for p in range(producers)]
    mp.finish(producing)
    assert work.join(timeout=GUARD), f"{work.unfinished_tasks} tasks still unfinished"
    work.shutdown()
    reports = mp.reports(consumers)
    mp.finish(consuming)

    streams = {consumer_id: got for _, consumer_id, got in reports}
    everything = [item for got in streams.values() for item in got]
    expected = [(p, s) for p in range(producers) for s in range(batches * size)]
    assert_each_item_once(everything, expected)
    for consumer_id, got in streams.items():
        assert_per_producer_order(got, f"consumer {consumer_id}")
    assert work.unfinished_tasks == 0


def test_a_batch_put_by_one_process_is_never_interleaved_with_another(mp: Processes) -> None:
    producers, batches, size = 3, 30, 5
    work = mp.queue(distqueue.Queue)
    producing = [mp.start(put_batches, work, p, batches, size, 0.0) for p in range(producers)]
    consuming = mp.start(consume_until_shutdown, work, mp.results, 0, 4)
    mp.finish(producing)
    assert work.join(timeout=GUARD), f"{work.unfinished_tasks} tasks still unfinished"
    work.shutdown()
    ((_, _, stream),) = mp.reports(1)
    mp.finish([consuming])

    assert_each_item_once(stream, [(p, s) for p in range(producers) for s in range(batches * size)])
    # Every batch sits in the consumer's stream as one run, in the order it was put.
    for start in range(0, len(stream), size):
        run = stream[start : start + size]
        producer_id, first = run[0]
        assert first % size == 0 and run == [(producer_id, first + i) for i in range(size)], (
            f"a batch of {size} was interleaved or split: {run!r} at {start}"
        )


# -- order ------------------------------------------------------------------------------------


def _by_priority(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda item: item[0])  # stable: equal priorities stay FIFO


def _reversed(items: list[Any]) -> list[Any]:
    return items[::-1]


@pytest.mark.parametrize(
    ("cls", "arrange"),
    [(distqueue.LifoQueue, _reversed), (distqueue.PriorityQueue, _by_priority)],
    ids=["lifo", "priority"],
)
def test_items_put_by_other_processes_come_out_in_the_queue_order(
    mp: Processes, cls: type[distqueue.Queue[Any]], arrange: Callable[[list[Any]], list[Any]]
) -> None:
    # Priorities repeat, and the dicts behind them cannot be compared: equal priorities must
    # come out first in, first out, across the two producer processes too.
    batches = [
        [((7 * i + producer) % 4, {"producer": producer, "seq": i}) for i in range(15)]
        for producer in range(2)
    ]
    work = mp.queue(cls)
    for items in batches:  # one producer after the other, so the expected order is known
        mp.finish([mp.start(put_items, work, items)])
    everything = batches[0] + batches[1]
    consuming = mp.start(get_items, work, mp.results, len(everything))
    (got,) = mp.reports(1)
    mp.finish([consuming])
    assert got == arrange(everything)
    assert work.qsize() == 0


# -- maxsize ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [distqueue.Queue, distqueue.PriorityQueue], ids=["fifo", "priority"]
)
def test_maxsize_holds_while_producer_processes_block_and_a_slow_consumer_drains(
    mp: Processes, cls: type[distqueue.Queue[Any]]
) -> None:
    maxsize, producers, per_producer = 3, 4, 25
    work = mp.queue(cls, maxsize)
    producing = [
        mp.start(put_items, work, [(p, seq) for seq in range(per_producer)])
        for p in range(producers)
    ]
    sizes: list[int] = []

    def sample() -> int:
        sizes.append(work.qsize())
        return sizes[-1]

    wait_for(lambda: sample() >= maxsize, "filling the queue")
    finished = [child.name for child in producing if not child.is_alive()]
    assert not finished, f"producers finished although the queue holds {maxsize}: {finished}"

    total = producers * per_producer
    consuming = mp.start(drain_slowly, work, mp.results, total, 0.01)
    deadline = time.monotonic() + GUARD
    while consuming.is_alive() and time.monotonic() < deadline:
        sample()
        time.sleep(0.002)
    ((got, sizes_after_get),) = mp.reports(1)
    mp.finish([consuming, *producing])

    assert max(sizes) <= maxsize, f"qsize() seen by the test process: {Counter(sizes)}"
    assert max(sizes_after_get) <= maxsize, (
        f"qsize() after each get in the consumer: {Counter(sizes_after_get)}"
    )
    assert_each_item_once(got, [(p, s) for p in range(producers) for s in range(per_producer)])
    assert work.qsize() == 0


# -- join and task_done -----------------------------------------------------------------------


def test_join_returns_only_after_other_processes_marked_every_item_done(mp: Processes) -> None:
    count = 40
    work = mp.queue(distqueue.Queue)
    processed = mp.queue(distqueue.Queue)
    work.put_many(range(count))
    # A child joins too, to show join() is released in every process.
    joining = mp.start(join_then_count, work, processed, mp.results)
    consuming = [mp.start(record_then_mark_done, work, processed, 0.02) for _ in range(2)]

    # Ask again and again while the consumers work: when join() says True, every item must
    # have been processed.
    deadline = time.monotonic() + GUARD
    while not work.join(timeout=0.05):
        assert time.monotonic() < deadline, f"{work.unfinished_tasks} tasks still unfinished"
    processed_when_joined = processed.qsize()
    ((child_joined, processed_when_child_joined),) = mp.reports(1)
    work.shutdown()
    mp.finish([joining, *consuming])

    assert processed_when_joined == count, "join() returned before every task_done()"
    assert child_joined is True
    assert processed_when_child_joined == count, "join() in a child returned too early"
    assert sorted(processed.get_many(count + 1, block=False)) == list(range(count))
    assert work.unfinished_tasks == 0


def test_task_done_once_too_often_in_a_child_raises_value_error_there(mp: Processes) -> None:
    work = mp.queue(distqueue.Queue)
    work.put("only")
    child = mp.start(task_done_once_too_often, work, mp.results)
    ((raised, message),) = mp.reports(1)
    mp.finish([child])
    assert raised == "ValueError", f"the second task_done() ended with {raised!r}"
    assert "too many times" in message
    assert work.unfinished_tasks == 0
    assert work.join(timeout=GUARD) is True


# -- shutdown ---------------------------------------------------------------------------------


def outcomes(mp: Processes, count: int) -> dict[int, tuple[str, Any]]:
    """Wait for ``count`` outcomes of blocked_call(), by child id."""
    return {child_id: (how, what) for how, child_id, what in mp.reports(count)}


@pytest.mark.parametrize(
    "cls",
    [distqueue.Queue, distqueue.LifoQueue, distqueue.PriorityQueue],
    ids=["fifo", "lifo", "priority"],
)
def test_shutdown_wakes_gets_blocked_in_other_processes(
    mp: Processes, cls: type[distqueue.Queue[Any]]
) -> None:
    work = mp.queue(cls)
    calls: list[tuple[str, tuple[Any, ...]]] = [("get", ()), ("get", ()), ("get_many", (5,))]
    children = [mp.start(blocked_call, work, mp.results, i, m, a) for i, (m, a) in enumerate(calls)]
    assert sorted(mp.reports(len(children))) == [("ready", i) for i in range(len(children))]
    time.sleep(SETTLE)
    work.shutdown()
    ended = outcomes(mp, len(children))
    mp.finish(children)
    assert ended == {i: ("raised", "ShutDown") for i in range(len(children))}


def test_shutdown_wakes_a_put_blocked_on_a_full_queue_in_another_process(
    mp: Processes,
) -> None:
    work = mp.queue(distqueue.Queue, 1)
    work.put("kept")
    children = [
        mp.start(blocked_call, work, mp.results, i, "put", (f"late {i}",)) for i in range(2)
    ]
    assert sorted(mp.reports(2)) == [("ready", 0), ("ready", 1)]
    time.sleep(SETTLE)
    work.shutdown()
    ended = outcomes(mp, 2)
    mp.finish(children)
    assert ended == {0: ("raised", "ShutDown"), 1: ("raised", "ShutDown")}
    assert work.get(timeout=GUARD) == "kept"  # a plain shutdown leaves the items to get
    with pytest.raises(distqueue.ShutDown):
        work.get(timeout=GUARD)


def test_shutdown_immediate_drains_and_releases_a_join_in_another_process(
    mp: Processes,
) -> None:
    work = mp.queue(distqueue.Queue)
    work.put_many(range(5))
    children = [mp.start(blocked_call, work, mp.results, i, "join", (GUARD,)) for i in range(2)]
    assert sorted(mp.reports(2)) == [("ready", 0), ("ready", 1)]
    time.sleep(SETTLE)
    assert work.unfinished_tasks == 5
    work.shutdown(immediate=True)
    ended = outcomes(mp, 2)
    mp.finish(children)
    assert ended == {0: ("returned", True), 1: ("returned", True)}
    assert work.qsize() == 0
    assert work.unfinished_tasks == 0
    with pytest.raises(distqueue.ShutDown):
        work.get(timeout=GUARD)
    with pytest.raises(distqueue.ShutDown):
        work.put(99)
