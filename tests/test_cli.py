"""The command line through its entry point, against a real redis-server (and memory where a
command means something in one process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from processes import fresh_name

import distqueue
from distqueue.cli import main
from distqueue.inspection import QueueFigures
from distqueue.registry import QUEUES_KEY
from distqueue.sampling import Sampler

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``distqueue ARGS...`` in this process: (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def queue(redis_url: str) -> Any:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=redis_url, name=fresh_name("cli"), visibility_timeout=30, max_deliveries=2
    )
    yield q
    q.delete()
    q.close()


def run_json(run: Run, *args: str) -> Any:
    status, out, err = run(*args, "--json")
    assert status == 0, err
    return json.loads(out)


def test_queues_lists_every_registered_queue_with_its_settings(
    run: Run, redis_url: str, queue: distqueue.Queue[Any]
) -> None:
    other: distqueue.PriorityQueue[Any] = distqueue.PriorityQueue(
        5, url=redis_url, name=fresh_name("cli-prio")
    )
    other.put((1, "x"))
    queue.put("a")
    found = {e["name"]: e for e in run_json(run, "queues", "--url", redis_url)}
    assert found[queue.name]["kind"] == "fifo"
    assert found[queue.name]["visibility_timeout"] == 30
    assert found[queue.name]["figures"]["waiting"] == 1
    assert (found[other.name]["kind"], found[other.name]["maxsize"]) == ("priority", 5)
    status, out, _ = run("queues", "--url", redis_url)
    assert status == 0
    [line] = [line for line in out.splitlines() if line.startswith(other.name)]
    assert line.split()[:3] == [other.name, "priority", "5"]
    other.delete()
    other.close()


def test_a_queue_whose_keys_are_gone_is_listed_only_with_all(run: Run, redis_url: str) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name("gone"))
    q.put(1)
    q.delete()  # from a program: the registry still names it
    assert q.name not in {e["name"] for e in run_json(run, "queues", "--url", redis_url)}
    listed = {e["name"]: e for e in run_json(run, "queues", "--url", redis_url, "--all")}
    assert listed[q.name]["figures"]["exists"] is False
    q.close()


def test_stats_match_the_queue_api(run: Run, redis_url: str, queue: distqueue.Queue[Any]) -> None:
    queue.put_many(range(5))
    queue.get()  # leased: in flight
    message = queue.get_message()
    message.reject("no")
    stats = run_json(run, "stats", "--url", redis_url, "--queue", queue.name, "--window", "0")
    assert stats["waiting"] == queue.qsize() == 3
    assert stats["in_flight"] == queue.in_flight() == 1
    assert stats["dead"] == len(queue.dead_letters()) == 1
    assert stats["unfinished"] == queue.unfinished_tasks == 4
    assert (stats["puts_total"], stats["gets_total"]) == (5, 2)
    everything = run_json(run, "stats", "--url", redis_url, "--window", "0")
    assert {s["queue"]: s for s in everything}[queue.name]["waiting"] == 3


def test_stats_watch_prints_a_table_each_time(
    run: Run, redis_url: str, queue: distqueue.Queue[Any]
) -> None:
    queue.put("x")
    status, out, _ = run(
        "stats", "--url", redis_url, "-q", queue.name, "--watch", "0.01", "--count", "2"
    )
    assert status == 0
    assert out.count("WAITING") == 2
    assert len([line for line in out.splitlines() if line.startswith(queue.name)]) == 2


def test_rates_and_the_oldest_age_come_from_samples() -> None:
    now = [0.0]
    sampler = Sampler(window=60, clock=lambda: now[0])

    def figures(puts: int, gets: int, oldest: bytes, waiting: int = 1) -> QueueFigures:
        return QueueFigures("q", "fifo", waiting=waiting, puts=puts, gets=gets, oldest=oldest)

    first = figures(0, 0, b"a")
    sampler.observe([first])
    assert (first.put_rate, first.oldest_age) == (None, 0.0)
    now[0] = 30.0
    second = figures(60, 30, b"a")
    sampler.observe([second])
    assert (second.put_rate, second.get_rate, second.oldest_age) == (2.0, 1.0, 30.0)
    now[0] = 100.0  # the first sample is out of the window: rates over the last minute
    third = figures(200, 30, b"b")
    sampler.observe([third])
    assert third.put_rate == 2.0 and third.get_rate == 0.0
    assert third.oldest_age == 0.0  # another item is the oldest now
    now[0] = 110.0
    reset = figures(5, 0, b"b")  # the queue was deleted and used again
    sampler.observe([reset])
    assert reset.put_rate is None


def test_peek_shows_waiting_items_in_get_order_without_taking_them(
    run: Run, redis_url: str
) -> None:
    names: list[distqueue.Queue[Any]] = []
    cases: list[tuple[type[distqueue.Queue[Any]], list[Any], list[str]]] = [
        (distqueue.Queue, [1, 2, 3], ["1", "2", "3"]),
        (distqueue.LifoQueue, [1, 2, 3], ["3", "2", "1"]),
        (
            distqueue.PriorityQueue,
            [(2, "b"), (1, "a"), (3, "c")],
            ["(1, 'a')", "(2, 'b')", "(3, 'c')"],
        ),
    ]
    for cls, items, expected in cases:
        q = cls(url=redis_url, name=fresh_name("peek"))
        q.put_many(items)
        names.append(q)
        shown = run_json(run, "peek", "--url", redis_url, "-q", q.name, "-n", "2")
        assert [i["item"] for i in shown] == expected[:2], cls
        shown = run_json(run, "peek", "--url", redis_url, "-q", q.name, "--offset", "1")
        assert [i["item"] for i in shown] == expected[1:]
        assert q.qsize() == 3
    fifo = names[0]
    assert [
        i["item"]
        for i in run_json(run, "peek", "--url", redis_url, "-q", fifo.name, "--search", "2")
    ] == ["2"]
    for q in names:
        q.delete()
        q.close()


def test_peek_shows_a_redelivered_item_and_never_decodes_pickle(run: Run, redis_url: str) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=redis_url, name=fresh_name("peek-nack"), visibility_timeout=30
    )
    q.put({"job": 1})
    q.get_message().nack()
    [item] = run_json(run, "peek", "--url", redis_url, "-q", q.name)
    assert (item["item"], item["redelivered"]) == ("{'job': 1}", True)
    pickled: distqueue.Queue[Any] = distqueue.Queue(
        url=redis_url, name=fresh_name("peek-pickle"), serializer="pickle"
    )
    pickled.put({"job": 2})
    [item] = run_json(run, "peek", "--url", redis_url, "-q", pickled.name)
    assert "bytes, pickle" in item["item"]
    for each in (q, pickled):
        each.delete()
        each.close()


def test_put_and_get_go_through_the_queue(
    run: Run, redis_url: str, queue: distqueue.Queue[Any]
) -> None:
    status, out, err = run("put", "--url", redis_url, "-q", queue.name, '{"a": 1}', "42")
    assert (status, out.strip()) == (0, f"put 2 item(s) on {queue.name!r}"), err
    status, _, _ = run("put", "--url", redis_url, "-q", queue.name, "--text", "plain words")
    assert status == 0
    assert run_json(run, "get", "--url", redis_url, "-q", queue.name, "-n", "5") == [
        "{'a': 1}",
        "42",
        "'plain words'",
    ]
    assert queue.unfinished_tasks == 0 and queue.join(timeout=0)
    status, out, err = run("get", "--url", redis_url, "-q", queue.name)
    assert (status, out) == (3, "") and "empty" in err
    status, _, err = run("put", "--url", redis_url, "-q", queue.name, "not json")
    assert status == 1 and "--text" in err


def test_purge_needs_yes_then_empties_the_queue_and_counts_items_done(
    run: Run, redis_url: str, queue: distqueue.Queue[Any]
) -> None:
    queue.put_many(range(1200))
    status, _, err = run("purge", "--url", redis_url, "-q", queue.name)
    assert status == 1 and "--yes" in err and queue.qsize() == 1200
    status, out, err = run("purge", "--url", redis_url, "-q", queue.name, "--yes", "--progress")
    assert status == 0 and out.strip() == f"purged 1200 waiting item(s) from {queue.name!r}"
    assert "1200/1200" in err  # the progress bar
    assert (queue.qsize(), queue.unfinished_tasks) == (0, 0)


def make_dead(queue: distqueue.Queue[Any], errors: list[str]) -> list[str]:
    queue.put_many(range(len(errors)))
    for error in errors:
        queue.get_message().reject(error)
    return [letter.id for letter in queue.dead_letters(len(errors))]


def test_dead_list_show_and_filters(run: Run, redis_url: str, queue: distqueue.Queue[Any]) -> None:
    ids = make_dead(queue, ["timeout talking to S3", "KeyError: 'x'", "timeout again"])
    where = ["--url", redis_url, "-q", queue.name]
    status, out, _ = run("dead", "list", *where, "--error", "TIMEOUT", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert [letter["id"] for letter in listed] == [ids[0], ids[2]]
    status, out, _ = run("dead", "list", *where)
    assert status == 0 and "KeyError" in out and out.startswith("ID")
    shown = run_json(run, "dead", "show", *where, ids[1])
    assert (shown["error"], shown["item"]) == ("KeyError: 'x'", "1")
    status, _, err = run("dead", "show", *where, "nope")
    assert status == 1 and "dead list" in err


def test_dead_requeue_and_purge_by_filter_or_id(
    run: Run, redis_url: str, queue: distqueue.Queue[Any]
) -> None:
    ids = make_dead(queue, ["timeout", "KeyError", "timeout", "fatal"])
    where = ["--url", redis_url, "-q", queue.name]
    status, out, err = run("dead", "requeue", *where, "--error", "timeout")
    assert (status, out.strip()) == (0, "requeued 2 dead letter(s)"), err
    assert sorted(queue.get_many(5, block=False)) == [0, 2]
    status, _, err = run("dead", "purge", *where, "--id", ids[1])
    assert status == 1 and "--yes" in err
    status, out, _ = run("dead", "purge", *where, "--id", ids[1], "--id", "no-such", "--yes")
    assert out.strip() == "purged 1 dead letter(s)"
    assert [letter.id for letter in queue.dead_letters()] == [ids[3]]
    status, out, _ = run("dead", "requeue", *where, "--id", ids[1])  # purged: nothing to do
    assert out.strip() == "requeued 0 dead letter(s)"


def test_requeueing_thousands_of_dead_letters_shows_progress(
    run: Run, redis_url: str, queue: distqueue.Queue[Any]
) -> None:
    queue.put_many(range(2000))
    while queue.qsize():
        for message in queue.get_messages(500, block=False):
            message.reject("bulk")
    assert len(queue.dead_letters(5000)) == 2000
    status, out, err = run("dead", "requeue", "--url", redis_url, "-q", queue.name, "--progress")
    assert (status, out.strip()) == (0, "requeued 2000 dead letter(s)")
    assert "2000/2000" in err and err.count("\r") >= 1
    assert (queue.qsize(), len(queue.dead_letters())) == (2000, 0)


def test_delete_needs_yes_then_removes_the_queue_and_its_entry(run: Run, redis_url: str) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name("del"))
    q.put("x")
    assert run("delete", "--url", redis_url, "-q", q.name)[0] == 1
    status, _, _ = run("delete", "--url", redis_url, "-q", q.name, "--yes")
    assert status == 0 and q.qsize() == 0
    assert q.name not in {e["name"] for e in run_json(run, "queues", "--url", redis_url, "--all")}
    q.close()


def test_garbage_in_the_registry_never_crashes_a_command(run: Run, redis_url: str) -> None:
    name = fresh_name("garbage")
    with redis.Redis.from_url(redis_url) as raw:
        raw.hset(QUEUES_KEY, name, b"\xff{{{")
        # a registered queue whose items key holds a string
        wrong = fresh_name("wrongtype")
        raw.hset(QUEUES_KEY, wrong, b'{"kind": "fifo"}')
        raw.set(f"dq:{{{wrong}}}:items", b"not a list")
    status, out, err = run("queues", "--url", redis_url, "--all")
    assert status == 0, err
    [line] = [line for line in out.splitlines() if line.startswith(name)]
    assert "unreadable" in line
    stats = {s["queue"]: s for s in run_json(run, "stats", "--url", redis_url, "--window", "0")}
    assert "unreadable" in stats[name]["error"]
    assert "WRONGTYPE" in stats[wrong]["error"]
    status, _, err = run("peek", "--url", redis_url, "-q", name)
    assert status == 1 and "unreadable" in err and "Traceback" not in err
    with redis.Redis.from_url(redis_url) as raw:
        raw.hdel(QUEUES_KEY, name, wrong)
        raw.delete(f"dq:{{{wrong}}}:items")


def test_a_queue_the_registry_does_not_know_needs_its_kind(run: Run, redis_url: str) -> None:
    name = fresh_name("unknown")
    status, _, err = run("stats", "--url", redis_url, "-q", name)
    assert status == 1 and "--kind" in err and "distqueue queues" in err
    stats = run_json(
        run, "stats", "--url", redis_url, "-q", name, "--kind", "lifo", "--window", "0"
    )
    assert (stats["kind"], stats["waiting"], stats["exists"]) == ("lifo", 0, False)


def test_errors_say_what_to_do(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTQUEUE_URL", raising=False)
    status, _, err = run("queues")
    assert status == 1 and "--url" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["dead"])
    assert exit_info.value.code == 2


def test_workers_lists_nothing_without_workers_and_the_memory_backend_works_in_process(
    run: Run,
) -> None:
    name = fresh_name("mem")
    q: distqueue.Queue[Any] = distqueue.Queue(4, url="memory://", name=name)
    q.put_many([1, 2])
    stats = run_json(run, "stats", "--url", "memory://", "-q", name, "--window", "0")
    assert (stats["waiting"], stats["unfinished"], stats["maxsize"]) == (2, 2, 4)
    status, out, _ = run("workers", "--url", "memory://", "-q", name)
    assert (status, out.strip()) == (0, "no live workers")
    status, _, err = run("peek", "--url", "memory://", "-q", name)
    assert status == 1 and "Redis URL" in err
    q.close()


def test_the_commands_work_on_a_redis_cluster(run: Run, cluster_url: str) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=cluster_url, name=fresh_name("cli-cluster"), visibility_timeout=30
    )
    q.put_many(["a", "b", "c"])
    q.get_message().reject("bad")
    stats = run_json(run, "stats", "--url", cluster_url, "-q", q.name, "--window", "0")
    assert (stats["waiting"], stats["dead"], stats["puts_total"]) == (2, 1, 3)
    assert [i["item"] for i in run_json(run, "peek", "--url", cluster_url, "-q", q.name)] == [
        "'b'",
        "'c'",
    ]
    [letter] = q.dead_letters()
    status, out, _ = run("dead", "requeue", "--url", cluster_url, "-q", q.name, "--id", letter.id)
    assert (status, out.strip()) == (0, "requeued 1 dead letter(s)")
    assert q.qsize() == 3
    workers = run_json(run, "workers", "--url", cluster_url)
    assert isinstance(workers, list)
    q.delete()
    q.close()


def test_a_registry_key_of_the_wrong_type_is_an_error_not_a_crash(run: Run, redis_url: str) -> None:
    from distqueue.registry import WORKERS_KEY

    backup = fresh_name("registry-backup")
    with redis.Redis.from_url(redis_url) as raw:
        had = {
            key: raw.rename(key, f"{backup}:{key}")
            for key in (QUEUES_KEY, WORKERS_KEY)
            if raw.exists(key)
        }
        raw.set(QUEUES_KEY, "garbage")
        raw.set(WORKERS_KEY, "garbage")
        try:
            for command in (["queues"], ["stats"], ["workers"]):
                status, _, err = run(*command, "--url", redis_url)
                assert status == 1 and "WRONGTYPE" in err and "Traceback" not in err, command
        finally:
            raw.delete(QUEUES_KEY, WORKERS_KEY)
            for key in had:
                raw.rename(f"{backup}:{key}", key)
