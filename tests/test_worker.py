"""``distqueue worker`` as a real process, and the ``dead`` and ``stats`` commands.

Each test starts ``python -m distqueue worker`` processes on a real redis-server (results on
Redis or on real memcached servers) and watches what they do from outside: the functions they
run (:mod:`taskfns`) append to Redis lists, the queue's own counters and dead letters say where
every item went, and the worker's stderr is its log. Durations are never asserted; every wait
has a generous limit (``GUARD``) so that a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import taskfns
from processes import GUARD, Records, Workers, fresh_name, settled, wait_until

import distqueue
from distqueue.errors import TaskFailed
from distqueue.kv.keys import DEFAULT_NAMESPACE, Keyspace
from distqueue.results import ResultStore
from distqueue.serializers import get_serializer
from distqueue.tasks import TaskMessage

pytestmark = pytest.mark.redis


@pytest.fixture
def queue(redis_url: str) -> Iterator[distqueue.Queue[Any]]:
    """A queue of its own on the session's redis-server (deleted afterwards)."""
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    yield q
    q.delete()
    q.close()


# -- Executor tasks ------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "memcached"])
def results_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Where results are kept: the queue's redis-server, or two real memcached servers."""
    if request.param == "redis":
        return redis_url
    return str(request.getfixturevalue("memcached_url"))


def test_a_worker_process_runs_executor_tasks(
    workers: Workers, redis_url: str, results_url: str
) -> None:
    name = fresh_name("tasks")
    worker = workers.start(redis_url, name, "--results", results_url)
    with distqueue.Executor(url=redis_url, queue=name, results=results_url) as executor:
        assert executor.submit(taskfns.pid).result(timeout=GUARD) == worker.pid
        assert executor.submit(taskfns.add, 2, 3).result(timeout=GUARD) == 5
        echoed = executor.submit(taskfns.echo, (1, 2), b"x", key={"a": (3,)})
        assert echoed.result(timeout=GUARD) == [((1, 2), b"x"), {"key": {"a": (3,)}}]

        with pytest.raises(ValueError, match="bad input") as builtin:
            executor.submit(taskfns.fail, "bad input").result(timeout=GUARD)
        assert "taskfns.py" in builtin.value.remote_traceback  # type: ignore[attr-defined]
        with pytest.raises(TaskFailed) as custom:
            executor.submit(taskfns.fail_custom, "nope").result(timeout=GUARD)
        assert (custom.value.exc_type, custom.value.message) == ("taskfns.CustomError", "nope")
        assert "CustomError" in custom.value.traceback_text

        # the tasks that raised did not hurt the worker: it goes on with the next ones
        doubled = executor.map(taskfns.add, range(20), range(20), timeout=GUARD)
        assert list(doubled) == [2 * i for i in range(20)]
    assert worker.poll() is None, workers.log(worker)
    assert workers.stop(worker) == 0
    assert "ValueError" in workers.log(worker)


# -- a function of the user's -------------------------------------------------------------------


def test_function_mode_calls_the_function_with_each_item_in_order(
    workers: Workers, records: Records, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    items: list[Any] = [0, "text", [1, 2], {"k": (1, 2)}, b"bytes", None, 2.5]
    queue.put_many(items)
    worker = workers.start(redis_url, queue.name, "taskfns:record")
    wait_until(
        lambda: len(records.items()) == len(items), f"{len(items)} records", show=records.items
    )
    assert records.items() == items
    wait_until(
        lambda: settled(queue) == (0, 0, 0), "every item acknowledged", show=lambda: settled(queue)
    )
    assert workers.stop(worker) == 0


def test_a_failing_item_is_retried_with_back_off_then_becomes_a_dead_letter(
    workers: Workers, records: Records, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    worker = workers.start(redis_url, queue.name, "--max-deliveries", "3", "taskfns:record")
    put_at = time.monotonic()
    queue.put({"fail": "boom"})
    [letter] = wait_until(queue.dead_letters, "the failing item to become a dead letter")
    waited = time.monotonic() - put_at

    assert letter.item == {"fail": "boom"}
    assert letter.deliveries == 3
    assert "failed 3 times" in letter.error
    assert "RuntimeError: failing on purpose: boom" in letter.error
    # back-off: delivered again 1 s after the first failure and 2 s after the second, never
    # at once (a lower bound only: a busy machine makes it longer, never shorter)
    assert waited >= 2.9, f"three deliveries within {waited:.2f} s: no back-off"
    log = workers.log(worker)
    for delivery in (1, 2, 3):
        assert f"(delivery {delivery})" in log, log
    assert records.items() == []
    assert settled(queue) == (0, 0, 0)

    queue.put("after")  # the worker is still there
    wait_until(lambda: records.items() == ["after"], "the next item", show=records.items)
    assert workers.stop(worker) == 0


def test_a_dead_letter_carries_the_error_of_the_last_delivery(
    workers: Workers, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    worker = workers.start(
        redis_url, queue.name, "--max-deliveries", "2", "taskfns:fail_with_attempt"
    )
    queue.put("x")
    [letter] = wait_until(queue.dead_letters, "the failing item to become a dead letter")
    assert "RuntimeError: attempt 2 at 'x'" in letter.error
    assert "attempt 1" not in letter.error
    assert workers.stop(worker) == 0


def test_a_payload_that_cannot_be_decoded_becomes_a_dead_letter_and_the_worker_goes_on(
    workers: Workers, records: Records, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    poison = b"{this is not json"
    with redis.Redis.from_url(redis_url) as client:  # as `redis-cli LPUSH` would
        client.execute_command("LPUSH", f"dq:{{{queue.name}}}:items", poison)
    queue.put("after")  # behind the poison payload
    worker = workers.start(redis_url, queue.name, "taskfns:record")

    wait_until(
        lambda: records.items() == ["after"], "the item behind the poison", show=records.items
    )
    [letter] = queue.dead_letters()
    assert (letter.item, letter.payload) == (None, poison)
    assert "could not be decoded" in letter.error
    assert worker.poll() is None, workers.log(worker)
    assert "could not be decoded" in workers.log(worker)
    assert workers.stop(worker) == 0


STATS_KEYS = ("queue", "waiting", "in_flight", "unfinished", "dead", "shut_down")


def test_dead_and_stats_commands_list_requeue_and_purge_dead_letters(
    workers: Workers, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    poison = b"not json at all"
    with redis.Redis.from_url(redis_url) as client:
        client.execute_command("LPUSH", f"dq:{{{queue.name}}}:items", poison)
    queue.put({"fail": "nope"})
    worker = workers.start(redis_url, queue.name, "--max-deliveries", "1", "taskfns:record")
    wait_until(lambda: len(queue.dead_letters()) == 2, "two dead letters")
    assert workers.stop(worker) == 0
    where = ["--url", redis_url, "--queue", queue.name]

    def stats() -> dict[str, Any]:
        counts: dict[str, Any] = json.loads(workers.cli("stats", *where, "--json", "--window=0"))
        return counts

    counts = stats()
    assert {key: counts[key] for key in counts if key in STATS_KEYS} == {
        "queue": queue.name,
        "waiting": 0,
        "in_flight": 0,
        "unfinished": 0,
        "dead": 2,
        "shut_down": False,
    }

    listed = [
        json.loads(line) for line in workers.cli("dead", "list", *where, "--json").splitlines()
    ]
    assert [letter["payload"] for letter in listed] == [
        poison.decode(),
        json.dumps({"fail": "nope"}, separators=(",", ":")),
    ], listed  # oldest first
    undecodable, failed = listed
    assert undecodable["item"].startswith("(undecodable, 15 bytes")
    assert "could not be decoded" in undecodable["error"]
    assert failed["item"] == repr({"fail": "nope"})
    assert failed["deliveries"] == 1
    assert "RuntimeError: failing on purpose: nope" in failed["error"]

    assert workers.cli("dead", "requeue", *where, "--limit", "1").strip() == (
        "requeued 1 dead letter(s)"
    )
    counts = stats()
    assert (counts["waiting"], counts["unfinished"], counts["dead"]) == (1, 1, 1)
    [left] = [
        json.loads(line) for line in workers.cli("dead", "list", *where, "--json").splitlines()
    ]
    assert left["id"] == failed["id"]

    assert workers.cli("dead", "purge", *where, "--yes").strip() == "purged 1 dead letter(s)"
    assert workers.cli("dead", "list", *where, "--json") == ""
    counts = stats()
    assert (counts["waiting"], counts["dead"]) == (1, 0)


@pytest.mark.parametrize(
    "mode", [(), ("--asyncio", "--concurrency", "1")], ids=["threads", "asyncio"]
)
def test_a_failing_item_does_not_stop_the_worker_and_the_log_counts_it(
    workers: Workers,
    records: Records,
    queue: distqueue.Queue[Any],
    redis_url: str,
    mode: tuple[str, ...],
) -> None:
    queue.put({"fail": "first"})
    queue.put_many(range(10))
    worker = workers.start(redis_url, queue.name, "--max-deliveries", "1", *mode, "taskfns:record")
    wait_until(lambda: len(records.items()) == 10, "the ten good items", show=records.items)
    assert records.items() == list(range(10))
    wait_until(
        lambda: settled(queue) == (0, 0, 0), "every item acknowledged", show=lambda: settled(queue)
    )
    assert worker.poll() is None, workers.log(worker)
    assert workers.stop(worker) == 0

    log = workers.log(worker)
    assert "failing on purpose: first" in log, log
    summary = [line for line in log.splitlines() if "processed" in line]
    assert summary, f"no throughput line in the worker's log:\n{log}"
    assert re.search(r"\b10\b", summary[-1]) and re.search(r"\b1\b[^\n]*failed", summary[-1]), (
        summary[-1]
    )


# -- stopping ------------------------------------------------------------------------------------


MODES = pytest.mark.parametrize(
    "mode",
    [("taskfns:record_start_end",), ("--asyncio", "taskfns:arecord_start_end")],
    ids=["threads", "asyncio"],
)
"""A recording worker on threads, and one on an event loop running the coroutine version."""


@MODES
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_item_in_hand_finish_then_the_worker_exits_0(
    workers: Workers,
    records: Records,
    queue: distqueue.Queue[Any],
    redis_url: str,
    signum: int,
    mode: tuple[str, ...],
) -> None:
    slow = {"sleep": 2, "n": 1}
    queue.put_many([slow, "next"])
    worker = workers.start(
        redis_url, queue.name, "--visibility-timeout", "1", "--concurrency", "1", *mode
    )
    wait_until(lambda: records.starts() == [(worker.pid, slow)], "the slow item to start")

    assert workers.stop(worker, signum) == 0
    assert records.ends() == [(worker.pid, slow)]  # it finished the item in hand ...
    assert records.starts() == [(worker.pid, slow)]  # ... and took no new one
    assert settled(queue) == (1, 0, 1)
    assert queue.get(timeout=0) == "next"


def test_after_the_grace_period_an_async_item_is_given_back_and_the_worker_exits_0(
    workers: Workers, records: Records, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    slow = {"sleep": 3600, "n": 3}
    queue.put(slow)
    options = ("--asyncio", "--grace", "0.2", "taskfns:arecord_start_end")
    worker = workers.start(redis_url, queue.name, *options)
    wait_until(lambda: records.starts() == [(worker.pid, slow)], "the slow item to start")

    assert workers.stop(worker) == 0
    assert records.ends() == []
    assert settled(queue) == (1, 0, 1)  # waiting again, not a dead letter
    assert queue.dead_letters() == []
    assert "giving back 1 item(s)" in workers.log(worker)


def test_a_long_async_item_keeps_its_lease_and_runs_once(
    workers: Workers, records: Records, queue: distqueue.Queue[Any], redis_url: str
) -> None:
    long = {"sleep": 4, "n": 4}  # four leases of one second each
    queue.put(long)
    options = ("--asyncio", "--visibility-timeout", "1", "taskfns:arecord_start_end")
    first = workers.start(redis_url, queue.name, *options)
    wait_until(lambda: records.starts() == [(first.pid, long)], "the long item to start")
    second = workers.start(redis_url, queue.name, *options)  # would take a lapsed lease
    wait_until(lambda: records.ends() == [(first.pid, long)], "the long item to end")
    wait_until(lambda: settled(queue) == (0, 0, 0), "the item acknowledged")
    assert records.starts() == [(first.pid, long)]
    assert workers.stop(second) == 0
    assert workers.stop(first) == 0


@MODES
def test_a_second_signal_exits_at_once_and_the_item_is_delivered_again(
    workers: Workers,
    records: Records,
    queue: distqueue.Queue[Any],
    redis_url: str,
    mode: tuple[str, ...],
) -> None:
    slow = {"sleep": 3, "n": 2}
    queue.put(slow)
    options = ("--visibility-timeout", "1", *mode)
    first = workers.start(redis_url, queue.name, *options)
    wait_until(lambda: records.starts() == [(first.pid, slow)], "the slow item to start")

    first.send_signal(signal.SIGTERM)
    workers.wait_for_log(first, "SIGTERM")  # handled: two signals at once could count as one
    status = workers.stop(first, signal.SIGTERM)
    assert status > 0, f"exit status {status} after a second signal; log:\n{workers.log(first)}"
    assert records.ends() == []  # it did not finish the item

    second = workers.start(redis_url, queue.name, *options)
    wait_until(
        lambda: records.ends() == [(second.pid, slow)],
        "the item to be delivered again",
        show=lambda: {"starts": records.starts(), "ends": records.ends()},
    )
    assert records.starts() == [(first.pid, slow), (second.pid, slow)]
    wait_until(lambda: settled(queue) == (0, 0, 0), "the item acknowledged")
    assert workers.stop(second) == 0


# -- what a worker process runs, and the settings that travel with a task -----------------------


def raw_task(path: str, *args: Any, key: bytes | None = None, **options: Any) -> TaskMessage:
    options.setdefault("ttl", 60.0)
    return TaskMessage.build(
        uuid.uuid4().hex,
        path,
        args,
        {},
        options.pop("reply", fresh_name("replies")),
        serializer=get_serializer(options.pop("serializer", "json")),
        key=key,
        **options,
    )


def lpush(redis_url: str, queue_name: str, message: TaskMessage) -> None:
    """Push a task message's bytes as ``redis-cli LPUSH`` would: the wire format, by hand."""
    payload = get_serializer("json").dumps(message.encode())
    with redis.Redis.from_url(redis_url) as client:
        client.execute_command("LPUSH", f"dq:{{{queue_name}}}:items", payload)


@pytest.mark.parametrize("mode", [(), ("--asyncio",)], ids=["threads", "asyncio"])
def test_a_hostile_lpush_never_runs_and_becomes_a_dead_letter(
    workers: Workers,
    queue: distqueue.Queue[Any],
    redis_url: str,
    tmp_path: Path,
    mode: tuple[str, ...],
) -> None:
    trace = tmp_path / "owned"
    lpush(redis_url, queue.name, raw_task("os:system", f"touch {trace}"))
    lpush(redis_url, queue.name, raw_task("subprocess:run", ["touch", str(trace)]))
    worker = workers.start(redis_url, queue.name, *mode)
    letters = wait_until(lambda: got if len(got := queue.dead_letters()) == 2 else [], "2")
    for letter, path in zip(letters, ("os:system", "subprocess:run"), strict=True):
        expected = f"refused: task {path!r} is not allowed on this worker (--allow taskfns; "
        assert (letter.error or "").startswith(expected), (expected, letter.error)
    assert not trace.exists(), "a hostile message ran a shell command"
    assert worker.poll() is None, workers.log(worker)
    assert "is not allowed on this worker" in workers.log(worker)
    assert workers.stop(worker) == 0


def test_a_worker_needs_to_be_told_what_it_may_run(workers: Workers, redis_url: str) -> None:
    worker = workers.start(redis_url, fresh_name(), env={"DISTQUEUE_ALLOW": ""})
    assert workers.wait_exit(worker) == 1
    assert "needs --allow" in workers.log(worker)


def test_a_worker_with_a_key_file_refuses_unsigned_and_runs_signed_tasks(
    workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"the shared key\n")  # surrounding whitespace is not part of the key
    name = fresh_name("tasks")
    worker = workers.start(redis_url, name, "--signing-key-file", str(key_file))
    with distqueue.Queue(url=redis_url, name=name) as queue:
        unsigned = distqueue.Executor(url=redis_url, queue=name)
        lost = unsigned.submit(taskfns.touch, str(tmp_path / "unsigned"))
        [letter] = wait_until(queue.dead_letters, "the unsigned task to become a dead letter")
        assert (
            letter.error == "refused: unsigned task message, and this worker requires a signature"
        )
        assert not lost.done()
        unsigned.shutdown(wait=False, cancel_futures=True)

        with distqueue.Executor(url=redis_url, queue=name, signing_key="the shared key") as ex:
            assert ex.submit(taskfns.pid).result(timeout=GUARD) == worker.pid
        with distqueue.Executor(
            url=redis_url, queue=name, serializer="pickle", signing_key=b"the shared key"
        ) as ex:
            assert ex.submit(taskfns.add, 1j, 1).result(timeout=GUARD) == 1 + 1j
        queue.delete()
    assert not (tmp_path / "unsigned").exists()
    assert workers.stop(worker) == 0


@pytest.mark.parametrize("ttl", [5.0, None], ids=["ttl-5s", "no-ttl"])
def test_a_worker_keeps_a_result_for_the_ttl_of_its_task(
    workers: Workers, redis_url: str, ttl: float | None
) -> None:
    name = fresh_name("tasks")
    reply = fresh_name("replies")
    message = raw_task("taskfns:add", 1, 2, ttl=ttl, reply=reply)
    workers.start(redis_url, name)
    lpush(redis_url, name, message)
    with distqueue.Queue(url=redis_url, name=reply) as replies:
        assert replies.get(timeout=GUARD) == message.task_id  # announced: stored before
        replies.delete()
    result_key = Keyspace(DEFAULT_NAMESPACE).task_keys(message.task_id)[0]
    with redis.Redis.from_url(redis_url) as client:
        remaining = client.pttl(result_key)
    if ttl is None:
        assert remaining == -1, f"expected no expiry, got a TTL of {remaining} ms"
    else:
        assert 0 < remaining <= ttl * 1000, f"expected a TTL of at most {ttl} s, got {remaining} ms"
    with ResultStore(redis_url) as results:
        assert results.wait(message.task_id, timeout=0).value == 3


def test_a_late_announcement_to_a_closed_executor_leaves_no_key_without_a_ttl(
    workers: Workers, redis_url: str
) -> None:
    name = fresh_name("tasks")
    executor = distqueue.Executor(url=redis_url, queue=name)
    future = executor.submit(taskfns.add, 1, 2)
    with distqueue.Queue(url=redis_url, name=name) as queue:
        wait_until(lambda: queue.qsize() == 1, "the task queued")
        executor.shutdown(wait=True, cancel_futures=True)
        assert future.cancelled()
        worker = workers.start(redis_url, name)  # takes the task after the Executor is gone
        workers.wait_for_log(worker, "no longer listens")
        wait_until(lambda: settled(queue) == (0, 0, 0), "the task acknowledged")
        queue.delete()
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"dq:{{{name}:replies:*"))
        ttls = {key: client.ttl(key) for key in keys}
    assert keys, "expected the reply queue's shut-down marker"
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert not any(key.endswith(b":items") for key in keys), keys
    assert workers.stop(worker) == 0
