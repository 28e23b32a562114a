"""Every script in examples/ runs, as a learner would run it, and prints what it teaches.

Each example runs as a subprocess of this interpreter: once on its embedded default (memory,
fakeredis, pymemcache's mock client) and once against the real servers the fixtures start.
The checks read its output: the orders of the four structures, the cache's hits and misses,
the word counts of the homework against counts made here from the bundled files. Timings are
printed by some examples and never checked.
"""

from __future__ import annotations

import ast
import collections
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import distqueue

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"

TESTED = {
    "producer_consumer.py",
    "threads.py",
    "four_queues.py",
    "concurrency.py",
    "memcached_basics.py",
    "redis_basics.py",
    "cached_function.py",
    "homework_wordcount.py",
}


def run_example(script: str, *args: str, status: int = 0) -> str:
    """Run ``examples/SCRIPT ARGS`` from the repository's root; return what it printed.

    Fails the test unless the example exits with ``status``.
    """
    env = {key: value for key, value in os.environ.items() if key != "DISTQUEUE_URL"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = f"$ examples/{script} {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == status, f"exit status {done.returncode}, not {status}:\n{output}"
    return done.stdout


def line_with(output: str, start: str) -> str:
    """The one line of ``output`` that starts with ``start`` (leading spaces ignored)."""
    found = [line.strip() for line in output.splitlines() if line.strip().startswith(start)]
    assert len(found) == 1, f"expected one line starting {start!r}, found {found}:\n{output}"
    return found[0]


def test_every_example_is_tested_and_says_how_to_run_it() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == TESTED, f"examples without a test here: {sorted(scripts - TESTED)}"
    for name in sorted(scripts):
        docstring = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
        assert docstring, f"{name} has no module docstring"
        assert f"python examples/{name}" in docstring, f"{name}'s docstring does not show its run"


# -- the demo and threads -------------------------------------------------------------------------


def test_producer_consumer_runs_in_memory() -> None:
    output = run_example("producer_consumer.py", "--items", "2000")
    assert "every item consumed exactly once" in output


@pytest.mark.slow
@pytest.mark.redis
def test_producer_consumer_runs_across_processes_on_redis(redis_url: str) -> None:
    output = run_example("producer_consumer.py", "--url", redis_url, "--items", "2000")
    assert "every item consumed exactly once" in output


def check_threads(output: str, jobs: int, consumers: int) -> None:
    assert line_with(output, "threads that ran:") == (
        "threads that ran: ['thread-0', 'thread-1', 'thread-2', 'thread-3']"
    )
    assert line_with(output, "their squares, sorted:") == "their squares, sorted: [0, 1, 4, 9]"
    assert f"put {jobs} jobs; join() returned" in output
    per_consumer = re.fullmatch(
        r"jobs per consumer: \[([\d, ]+)\] \(in all (\d+)\)", line_with(output, "jobs per")
    )
    assert per_consumer is not None, output
    counts = [int(n) for n in per_consumer[1].split(",")]
    assert len(counts) == consumers and sum(counts) == int(per_consumer[2]) == jobs
    expected = sum(n * n for n in range(1, jobs + 1))
    assert (
        line_with(output, "sum of squares:") == f"sum of squares: {expected} (expected {expected})"
    )


def test_threads_share_a_queue_in_memory() -> None:
    output = run_example("threads.py", "--jobs", "120", "--consumers", "3")
    assert "the consumers are threads" in output
    check_threads(output, 120, 3)


@pytest.mark.slow
@pytest.mark.redis
def test_threads_code_runs_in_processes_given_a_url(redis_url: str) -> None:
    output = run_example("threads.py", "--url", redis_url, "--jobs", "120", "--consumers", "2")
    assert "the consumers are processes" in output
    check_threads(output, 120, 2)


# -- the four structures --------------------------------------------------------------------------


def orders(output: str) -> dict[str, list[int]]:
    """What each row of four_queues.py printed: its label (spaces collapsed) -> the list."""
    found = {}
    for line in output.splitlines():
        row = re.fullmatch(r"(\S.*?)\s+\[([-\d, ]*)\]", line)
        if row is not None and not line.startswith("on "):
            found[" ".join(row[1].split())] = [int(n) for n in row[2].split(",") if n.strip()]
    return found


def check_default_orders(output: str) -> None:
    assert "the same input to each: [5, 1, 4, 2, 3]" in output
    assert orders(output) == {
        "Queue FIFO get()": [5, 1, 4, 2, 3],
        "LifoQueue LIFO get()": [3, 2, 4, 1, 5],
        "PriorityQueue lowest get()": [1, 2, 3, 4, 5],
        "Deque append + popleft()": [5, 1, 4, 2, 3],
        "Deque append + pop()": [3, 2, 4, 1, 5],
        "Deque(maxlen=3) append + popleft()": [4, 2, 3],
    }, output
    assert "every order is the standard library's" in output


def test_four_structures_give_their_orders_in_memory() -> None:
    check_default_orders(run_example("four_queues.py"))


@pytest.mark.redis
def test_four_structures_give_the_same_orders_on_redis(redis_url: str) -> None:
    output = run_example("four_queues.py", "--url", redis_url)
    assert f"on {redis_url}," in output
    check_default_orders(output)


@pytest.mark.parametrize("where", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_four_structures_order_any_input_with_repeats(where: str, request: Any) -> None:
    items = [9, 3, 7, 3, 1, 9]
    url = ["--url", request.getfixturevalue("redis_url")] if where == "redis" else []
    found = orders(run_example("four_queues.py", *map(str, items), *url))
    assert found == {
        "Queue FIFO get()": items,
        "LifoQueue LIFO get()": items[::-1],
        "PriorityQueue lowest get()": sorted(items),
        "Deque append + popleft()": items,
        "Deque append + pop()": items[::-1],
        "Deque(maxlen=4) append + popleft()": items[-4:],
    }


# -- concurrency ----------------------------------------------------------------------------------

TIMED = re.compile(
    r"(?P<label>[^:]+):\s+(?P<seconds>\d+\.\d\d) s\s+"
    r"(?:speed-up x(?P<gain>\d+\.\d))?\s*total (?P<total>\d+)"
)


def check_concurrency(output: str, jobs: int, processes_label: str) -> None:
    rows = {}
    for line in output.splitlines():
        row = TIMED.fullmatch(line)
        if row is not None:
            rows[row["label"]] = row
    assert list(rows) == ["serially", "threads, distqueue.Queue in memory", processes_label], output
    expected = sum(n * n for n in range(jobs))
    for label, row in rows.items():
        assert int(row["total"]) == expected, f"{label}: {row['total']} != {expected}"
        assert (row["gain"] is None) == (label == "serially"), output  # a speed-up is shown
    assert re.search(r"starting the 2 processes took \d+\.\d\d s more", output), output
    assert f"every way computed the same total ({expected})" in output


@pytest.mark.slow
def test_concurrency_compares_serial_threads_and_processes() -> None:
    output = run_example("concurrency.py", "--jobs", "8", "--workers", "2", "--delay", "0.02")
    check_concurrency(output, 8, "processes, multiprocessing.JoinableQueue")


@pytest.mark.slow
@pytest.mark.redis
def test_concurrency_processes_share_a_queue_on_redis(redis_url: str) -> None:
    output = run_example(
        "concurrency.py", "--url", redis_url, "--jobs", "8", "--workers", "2", "--delay", "0.02"
    )
    check_concurrency(output, 8, "processes, distqueue.Queue on Redis")


# -- memcached ------------------------------------------------------------------------------------

PYMEMCACHE_LINES = [
    "set/get set greeting=b'hello' -> True; get -> b'hello'",
    "add greeting (taken) -> False; fresh (absent) -> True",
    "replace greeting (present) -> True; nobody (absent) -> False",
    "append/prepend greeting -> b'oh, hi there'",
    "incr/decr visits 10, +5 -> 15, -3 -> 12; incr of a missing key -> None",
    "set_many 3 keys, failed: []",
    "get_many a b c d -> {'a': b'1', 'b': b'2', 'c': b'3'}",
    "delete fresh -> True; again -> False; get -> None",
    "expiry set short with expire=1 -> get b'soon gone'",
]
CACHE_LINES = [
    "set/get set user={'name': 'Ada', 'langs': ['python', 'lua']} -> True; "
    "get -> {'name': 'Ada', 'langs': ['python', 'lua']}",
    "add user (taken) -> False; fresh (absent) -> True",
    "replace fresh (present) -> True; nobody (absent) -> False",
    "append/prepend log b'b' +c -> True, a+ -> True: b'abc'; append to a missing key -> False",
    "incr/decr visits (new) +5 -> 5, -8 -> 0 (stops at 0)",
    "gets/cas gets user -> a token; cas with it -> True; again -> False",
    "(the token is stale after the first cas: user -> {'name': 'Ada', 'langs': ['python']})",
    "set_many 3 keys, not stored: []",
    "get_many a b c d -> {'a': 1, 'b': [2], 'c': 'three'}",
    "delete fresh -> True; again -> False; get -> None",
    "expiry set short with ttl=1 -> get 'soon gone'",
]


def check_memcached(output: str) -> list[str]:
    lines = [" ".join(line.split()) for line in output.splitlines()]
    part_two = next(i for i, line in enumerate(lines) if line.startswith("part 2:"))
    for expected in PYMEMCACHE_LINES:
        assert expected in lines[:part_two], f"missing in part 1: {expected!r}\n{output}"
    for expected in CACHE_LINES:
        assert expected in lines[part_two:], f"missing in part 2: {expected!r}\n{output}"
    assert "after 2 s: pymemcache get short -> None; Cache get short -> None" in lines, output
    assert re.search(r"Cache.stats: hits \d+, misses \d+, server errors 0", output), output
    return lines


def test_memcached_basics_run_on_the_mock_client_and_memory() -> None:
    lines = check_memcached(run_example("memcached_basics.py"))
    assert "part 1: pymemcache's MockMemcacheClient, in this process" in lines
    assert "part 2: distqueue.Cache on memory://" in lines
    assert "gets/cas not in MockMemcacheClient: run with --memcached HOST:PORT" in lines


def test_memcached_basics_run_on_a_real_memcached(memcached_pair: tuple[Any, Any]) -> None:
    address = memcached_pair[0].address
    lines = check_memcached(run_example("memcached_basics.py", "--memcached", address))
    assert f"part 1: pymemcache on {address}" in lines
    assert f"part 2: distqueue.Cache on memcached://{address}" in lines
    assert "gets/cas gets -> b'oh, hi there'; cas with its token -> True; again -> False" in lines
    assert "(the first cas changed the value, so its token is stale: b'changed once')" in lines


# -- Redis ----------------------------------------------------------------------------------------

REDIS_LINES = [
    "GET lesson:greeting -> 'hello'",
    "SET lesson:lock you NX EX 10 -> None",
    "INCRBY lesson:visits 10 -> 11",
    "HGETALL lesson:user:42 -> {'name': 'Ada', 'born': '1815', 'logins': '1'}",
    "LRANGE lesson:jobs 0 -1 -> ['z', 'a', 'b', 'c']",
    "SUNION ada bob (either) -> ['c', 'go', 'lua', 'python']",
    "ZRANGE lesson:scores 0 -1 WITHSCORES -> [('bob', 10.0), ('eve', 20.0), ('ada', 30.0)]",
    "pipeline: INCR, GET, LLEN in one round trip -> [12, 'hello', 1]",
    "transfer 30 alice->bob, 2 attempts -> ['75', '30']",
    "the subscriber received -> ['hello', 'bye']",
    """dq:{lesson-jobs}:items list ['{"resize":"dog.jpg"}', '{"resize":"cat.jpg"}']""",
    "dq:{lesson-jobs}:meta hash {'kind': 'fifo', 'unfinished': '2', 'puts': '2'}",
    "dq:{lesson-jobs}:r:ID string 1 key: the last put's reply, kept for a retry",
    "dq:{lesson-priority}:items zset 2 members, each its item in an order-preserving encoding",
    "jobs.get() (first in, first out) -> {'resize': 'cat.jpg'}",
    "urgent.get() (the smallest) -> (1, 'fix outage')",
]


def check_redis(output: str) -> None:
    lines = [" ".join(line.split()) for line in output.splitlines()]
    for expected in REDIS_LINES:
        assert expected in lines, f"missing: {expected!r}\n{output}"


def test_redis_basics_run_on_fakeredis() -> None:
    output = run_example("redis_basics.py")
    assert output.startswith("Redis on fakeredis\n")
    check_redis(output)


@pytest.mark.redis
def test_redis_basics_run_on_a_real_redis_and_clean_up(redis_url: str) -> None:
    import redis

    output = run_example("redis_basics.py", "--url", redis_url)
    assert output.startswith(f"Redis on {redis_url}\n")
    check_redis(output)
    with redis.Redis.from_url(redis_url) as client:
        assert list(client.scan_iter(match="lesson:*")) == []
        assert list(client.scan_iter(match="dq:{lesson-*}:items")) == []


# -- a cached function ----------------------------------------------------------------------------


def check_cached(output: str, threads: int) -> None:
    assert "slow_square ran for [4, 5]; stats: hits 1, misses 2" in output
    assert "slow_square ran for [4, 5, 4, 5]" in output
    for label, value in [
        ("square(4), first call: a miss", 16),
        ("square(4) again: a hit", 16),
        ("square(4) after invalidate(4)", 16),
        ("square(5) after cache_clear()", 25),
    ]:
        line = line_with(output, label)
        assert re.fullmatch(rf"{re.escape(label)}\s+-> {value}\s+in\s+\d+ ms", line), line
    ran_once = f"{threads} threads called square(7) at once; slow_square ran 1 time(s)"
    assert f"{ran_once}; results: [49]" in output
    stampede = re.search(r"misses (\d+), hits (\d+), waited for another's result (\d+)", output)
    assert stampede is not None, output
    misses, hits, waits = map(int, stampede.groups())
    assert misses + hits == threads and waits == misses - 1, output
    total = line_with(output, "total:")
    assert total.startswith(f"total: slow_square ran 5 times for {threads + 5} calls; "), total
    assert total.endswith(", server errors 0"), total


def test_cached_function_in_memory() -> None:
    output = run_example("cached_function.py", "--threads", "6")
    assert output.startswith("cache on memory://\n")
    check_cached(output, 6)


@pytest.mark.parametrize("where", [pytest.param("redis", marks=pytest.mark.redis), "memcached"])
def test_cached_function_on_a_real_server(where: str, request: Any) -> None:
    if where == "redis":
        url = request.getfixturevalue("redis_url")
        args = ["--url", url]
    else:
        address = request.getfixturevalue("memcached_pair")[0].address
        url = f"memcached://{address}"
        args = ["--memcached", address]
    output = run_example("cached_function.py", *args, "--threads", "6")
    assert output.startswith(f"cache on {url}\n")
    check_cached(output, 6)


# -- the homework ---------------------------------------------------------------------------------

WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def counted_here() -> dict[str, collections.Counter[str]]:
    return {
        path.name: collections.Counter(WORD.findall(path.read_text().lower()))
        for path in sorted(DATA.glob("*.txt"))
    }


def check_homework(output: str) -> collections.Counter[str]:
    documents = counted_here()
    assert len(documents) >= 3, "examples/data holds too few documents"
    total: collections.Counter[str] = collections.Counter()
    for name, counts in documents.items():
        expected = f"{name}: {sum(counts.values())} words, {len(counts)} distinct"
        assert line_with(output, f"{name}:") == expected
        total.update(counts)
    words = sum(total.values())
    expected = f"all {len(documents)} documents: {words} words, {len(total)} distinct"
    assert line_with(output, "all ") == expected
    top = sorted(total.items(), key=lambda pair: (-pair[1], pair[0]))[:10]
    expected = "the 10 most common: " + ", ".join(f"{word} {count}" for word, count in top)
    assert line_with(output, "the 10 most common:") == expected
    return total


def test_homework_counts_the_bundled_documents_in_memory() -> None:
    output = run_example("homework_wordcount.py")
    assert "2 workers (threads)" in output
    check_homework(output)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("results", ["redis", "memcached"])
def test_homework_runs_worker_processes_and_keeps_results_in_the_cache(
    results: str, request: Any
) -> None:
    redis_url = request.getfixturevalue("redis_url")
    name = f"wordcount-{uuid.uuid4().hex[:8]}"
    args = ["--url", redis_url, "--name", name, "--workers", "2"]
    cache_url = redis_url
    if results == "memcached":
        address = request.getfixturevalue("memcached_pair")[0].address
        args += ["--memcached", address]
        cache_url = f"memcached://{address}"
    output = run_example("homework_wordcount.py", *args)
    assert f"results in {cache_url}; 2 workers (processes)" in output
    total = check_homework(output)
    with distqueue.Cache(cache_url, namespace=name) as cache:
        stored = cache.get("total")
        assert stored is not None, "no total in the cache"
        assert (stored["words"], stored["distinct"]) == (sum(total.values()), len(total))
        for document, counts in counted_here().items():
            assert cache.get(f"counts:{document}") == {"counts": dict(counts)}


@pytest.mark.slow
@pytest.mark.redis
def test_homework_takes_a_worker_started_on_its_own(redis_url: str) -> None:
    """The cross-machine set-up: a worker started apart, and a run that starts none."""
    name = f"wordcount-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if key != "DISTQUEUE_URL"}
    command = [sys.executable, str(EXAMPLES / "homework_wordcount.py"), "--worker"]
    worker = subprocess.Popen(
        [*command, "--url", redis_url, "--name", name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = run_example(
            "homework_wordcount.py", "--url", redis_url, "--name", name, "--workers", "0"
        )
        check_homework(output)
        printed, _ = worker.communicate(timeout=60)  # the run's end stops its workers
        assert worker.returncode == 0, printed
        late = subprocess.run(
            [*command, "--url", redis_url, "--name", name],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert late.returncode == 1, late.stdout + late.stderr
        assert f"the run {name!r} is over" in late.stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize(
    "where", ["memory", pytest.param("redis", marks=[pytest.mark.slow, pytest.mark.redis])]
)
def test_homework_reports_a_document_it_cannot_fetch(
    where: str, tmp_path: Path, request: Any
) -> None:
    missing = tmp_path / "nowhere.txt"
    relay = DATA / "relay.txt"
    args = [str(relay), str(missing)]
    if where == "redis":
        args += ["--url", request.getfixturevalue("redis_url"), "--name", uuid.uuid4().hex]
    output = run_example("homework_wordcount.py", *args, status=1)
    assert line_with(output, "nowhere.txt:").startswith("nowhere.txt: FAILED (")
    assert line_with(output, "1 of 2 documents:").startswith("1 of 2 documents: ")
    counts = collections.Counter(WORD.findall(relay.read_text().lower()))
    expected = f"relay.txt: {sum(counts.values())} words, {len(counts)} distinct"
    assert line_with(output, "relay.txt:") == expected
