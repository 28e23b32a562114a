"""Nothing lost, doubled or stuck when the network or the server misbehaves (real redis-server).

Faults come from a proxy between the queue and the server (tests/faults.py): a reply dropped
after the server did the work, a reply cut in the middle, a reply held back past the client's
socket timeout, a server that accepts connections and never answers. Others are done to the
server itself: SIGSTOP, kill and restart (with AOF). For each operation the outcome is checked
exactly, through a second queue object that talks to the server directly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import FaultyProxy
from servers import RedisServer, free_port, require_binary
from threads import run_in_thread, wait_until_blocked

import distqueue

pytestmark = pytest.mark.redis

# Short limits, so that the bounds below are seconds, not minutes.
LIMITS = "socket_timeout=1&connect_timeout=1&retry_window=4"
BOUND_SLACK = 5.0  # on top of what the limits allow: a loaded machine is slow, never 10x


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this module's own (AOF on), which its tests stop and restart."""
    binary = require_binary("redis-server")
    own = RedisServer(binary, tmp_path_factory.mktemp("faults"), appendonly=True)
    yield own
    own.kill()


@pytest.fixture
def live(server: RedisServer) -> RedisServer:
    """The module's server, started again if a test left it down."""
    if server.process is None or server.process.poll() is not None:
        server.start()
    return server


@pytest.fixture
def proxy(live: RedisServer) -> Iterator[FaultyProxy]:
    faulty = FaultyProxy(live.port)
    yield faulty
    faulty.close()


Opened = Callable[..., tuple[Any, Any]]


@pytest.fixture
def pair(live: RedisServer, proxy: FaultyProxy) -> Iterator[Opened]:
    """``pair(cls, **kwargs)``: the same new queue twice, through the proxy and directly."""
    opened: list[Any] = []

    def open_pair(cls: Any = distqueue.Queue, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        name = f"faults-{uuid.uuid4().hex}"
        faulty = cls(*args, url=proxy.url(LIMITS), name=name, **kwargs)
        direct = cls(*args, url=live.url, name=name, **kwargs)
        opened.extend([faulty, direct])
        faulty.qsize()  # a connection in the pool, so that the fault hits the call itself
        return faulty, direct

    yield open_pair
    for q in opened:
        q.close()


# -- a reply lost after the server did the work: the retry returns the first outcome ----------


def test_a_put_whose_reply_is_lost_is_put_once(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair()
    proxy.drop_reply()
    faulty.put("x")
    assert proxy.drops == 1
    assert (direct.qsize(), direct.unfinished_tasks) == (1, 1)
    assert direct.get_nowait() == "x"


def test_a_put_many_whose_reply_is_lost_is_put_once(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair(distqueue.PriorityQueue)
    proxy.drop_reply()
    faulty.put_many([(2, "b"), (1, "a"), (3, "c")])
    assert proxy.drops == 1
    assert (direct.qsize(), direct.unfinished_tasks) == (3, 3)
    assert direct.get_many(10) == [(1, "a"), (2, "b"), (3, "c")]


def test_a_get_whose_reply_is_lost_returns_that_item(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair()
    direct.put_many(["first", "second"])
    proxy.drop_reply(b"first")
    assert faulty.get_nowait() == "first"
    assert proxy.drops == 1
    assert direct.get_many(10) == ["second"]


def test_a_get_many_whose_reply_is_lost_returns_those_items(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair(distqueue.LifoQueue)
    direct.put_many(["a", "b", "c"])
    proxy.drop_reply(b"c")
    assert faulty.get_many(2) == ["c", "b"]
    assert direct.get_many(10) == ["a"]


def test_a_reply_cut_in_the_middle_is_read_again_whole(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair()
    big = "x" * 300_000
    direct.put_many([big, "next"])
    proxy.cut_mid_reply(b"xxxx")
    assert faulty.get_nowait() == big
    assert proxy.drops == 1
    assert direct.get_many(10) == ["next"]


def test_a_lease_whose_reply_is_lost_is_one_delivery(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair(distqueue.Queue, visibility_timeout=30)
    direct.put_many(["a", "b"])
    proxy.drop_reply(b"a")
    assert faulty.get() == "a"
    assert (direct.qsize(), direct.in_flight()) == (1, 1)
    faulty.task_done()
    assert (direct.in_flight(), direct.unfinished_tasks) == (0, 1)


def test_a_blocked_get_whose_reply_is_lost_returns_the_item(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair()
    thread, outcome = run_in_thread(lambda: faulty.get(timeout=30))
    wait_until_blocked(thread, direct)
    proxy.drop_reply(b"awaited")
    direct.put("awaited")
    thread.join(30)
    assert outcome == ["awaited"]
    assert (direct.qsize(), direct.unfinished_tasks) == (0, 1)


def test_a_task_done_whose_reply_is_lost_counts_once(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair()
    direct.put_many([1, 2])
    direct.get_many(2)
    proxy.drop_reply()
    faulty.task_done()
    assert proxy.drops == 1
    assert direct.unfinished_tasks == 1
    faulty.task_done()  # the legitimate second one does not raise
    assert direct.join(timeout=1)
    with pytest.raises(ValueError, match="too many"):
        faulty.task_done()


@pytest.mark.parametrize("settle", ["ack", "nack", "reject", "extend"])
def test_settling_a_message_whose_reply_is_lost_happens_once(
    pair: Opened, proxy: FaultyProxy, settle: str
) -> None:
    faulty, direct = pair()
    direct.put_many(["m", "other"])
    message = faulty.get_message()
    proxy.drop_reply()
    if settle == "reject":
        assert message.reject("bad") is True
    elif settle == "extend":
        assert message.extend(60) is True
    else:
        assert getattr(message, settle)() is True
    assert proxy.drops == 1
    expected = {
        "ack": (1, 0, 1, 0),  # waiting, in flight, unfinished, dead letters
        "nack": (2, 0, 2, 0),
        "reject": (1, 0, 1, 1),
        "extend": (1, 1, 2, 0),
    }[settle]
    counts = (
        direct.qsize(),
        direct.in_flight(),
        direct.unfinished_tasks,
        len(direct.dead_letters()),
    )
    assert counts == expected
    if settle == "nack":
        assert direct.get_many(10) == ["m", "other"]


def test_dead_letter_tools_whose_reply_is_lost_act_once(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair()
    direct.put_many(["a", "b", "c"])
    for message in direct.get_messages(3):
        message.reject("no")
    proxy.drop_reply()
    assert faulty.requeue_dead(limit=1) == 1
    assert (direct.qsize(), len(direct.dead_letters())) == (1, 2)
    proxy.drop_reply()
    assert faulty.purge_dead(limit=1) == 1
    assert len(direct.dead_letters()) == 1
    assert proxy.drops == 2


def test_a_shutdown_whose_reply_is_lost_drops_each_item_once(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair()
    direct.put_many([1, 2, 3])
    direct.get()
    proxy.drop_reply()
    faulty.shutdown(immediate=True)
    assert proxy.drops == 1
    assert (direct.qsize(), direct.unfinished_tasks, direct.is_shutdown) == (0, 1, True)


def test_a_reply_held_past_the_socket_timeout_is_not_run_twice(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair()
    proxy.delay_reply(2.5)  # the client gives up after 1 s and retries
    faulty.put("late")
    assert proxy.drops == 1
    assert (direct.qsize(), direct.unfinished_tasks) == (1, 1)


def test_a_server_stopped_past_the_socket_timeout_runs_each_call_once(
    pair: Opened, live: RedisServer
) -> None:
    faulty, direct = pair()
    direct.put_many(["a", "b"])
    assert live.process is not None
    os.kill(live.process.pid, signal.SIGSTOP)
    resume = threading.Timer(2.5, os.kill, (live.process.pid, signal.SIGCONT))
    resume.start()
    try:
        faulty.put("c")  # sent, then the client times out: the server runs it when resumed
        assert faulty.get_nowait() == "a"
    finally:
        resume.join()
    assert (direct.qsize(), direct.unfinished_tasks) == (2, 3)
    assert direct.get_many(10) == ["b", "c"]


# -- a server that never answers: every call ends within its bound --------------------------


def bound(timeout: float = 0.0) -> float:
    """The longest a call may take with LIMITS: its own timeout, the retry window, one connect
    and one reply timeout, and slack for a loaded machine."""
    return timeout + 4 + 1 + 1 + BOUND_SLACK


def test_calls_to_a_server_that_never_answers_end_within_their_bound(
    proxy: FaultyProxy,
) -> None:
    proxy.black_hole()
    q: distqueue.Queue[Any] = distqueue.Queue(url=proxy.url(LIMITS), name="silent")
    calls: dict[str, Callable[[], Any]] = {
        "get(timeout=1)": lambda: q.get(timeout=1),
        "put": lambda: q.put(1),
        "qsize": q.qsize,
        "join(timeout=1)": lambda: q.join(timeout=1),
    }
    for what, call in calls.items():
        started = time.monotonic()
        with pytest.raises(distqueue.BackendConnectionError):
            call()
        took = time.monotonic() - started
        assert took < bound(1), f"{what} took {took:.1f} s"
    q.close()


def test_the_command_line_against_a_server_that_never_answers_ends_within_its_bound(
    proxy: FaultyProxy,
) -> None:
    import subprocess
    import sys

    proxy.black_hole()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "distqueue", "stats", "--url", proxy.url(LIMITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode == 1
    assert "unreachable" in done.stderr, done.stderr
    assert took < bound() + 5, f"took {took:.1f} s"  # + starting Python


def test_a_call_sent_and_never_answered_says_its_outcome_is_unknown(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair()
    proxy.black_hole()  # the pooled connection too: the put is sent, and nothing comes back
    started = time.monotonic()
    with pytest.raises(distqueue.OutcomeUnknownError, match="may or may not"):
        faulty.put("x")
    assert time.monotonic() - started < bound()
    proxy.heal()
    assert direct.qsize() == 1  # it did run: hence "unknown", never "failed"


def test_a_server_that_refuses_connections_is_a_plain_connection_error() -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"redis://127.0.0.1:{free_port()}/0?{LIMITS}", name="refused"
    )
    with pytest.raises(distqueue.BackendConnectionError) as info:
        q.put(1)
    assert not isinstance(info.value, distqueue.OutcomeUnknownError)  # nothing was sent
    q.close()


def test_tls_to_a_plain_port_ends_within_its_bound(live: RedisServer) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"rediss://127.0.0.1:{live.port}/0?{LIMITS}", name="tls"
    )
    started = time.monotonic()
    with pytest.raises(distqueue.BackendConnectionError):
        q.get(timeout=1)
    assert time.monotonic() - started < bound(1)
    q.close()


def test_wrong_credentials_are_an_authentication_error_at_once(live: RedisServer) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"redis://nobody:wrong@127.0.0.1:{live.port}/0", name="auth"
    )
    with pytest.raises(distqueue.AuthenticationError, match="credentials"):
        q.put(1)
    q.close()


# -- outages and restarts: blocked calls with time left wait them out -----------------------


def restart_after(server: RedisServer, seconds: float) -> threading.Thread:
    server.kill()
    thread = threading.Timer(seconds, server.start)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize("leasing", [False, True], ids=["plain", "leasing"])
def test_a_blocked_get_waits_through_an_outage_and_wakes_for_the_next_item(
    live: RedisServer, leasing: bool
) -> None:
    name = f"outage-{uuid.uuid4().hex}"
    consumer: distqueue.Queue[Any] = distqueue.Queue(
        url=live.url, name=name, visibility_timeout=30 if leasing else None
    )
    thread, outcome = run_in_thread(lambda: consumer.get(timeout=60))
    wait_until_blocked(thread, consumer)
    restart_after(live, 6.0).join()  # longer than the retry window
    producer: distqueue.Queue[Any] = distqueue.Queue(url=live.url, name=name)
    producer.put("after the outage")
    thread.join(30)
    assert outcome == ["after the outage"]
    assert producer.in_flight() == (1 if leasing else 0)
    consumer.close()
    producer.close()


@pytest.mark.slow
def test_items_and_counts_survive_a_restart_and_join_waits_through_it(live: RedisServer) -> None:
    name = f"restart-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=live.url, name=name)
    q.put_many(["a", "b"])
    thread, outcome = run_in_thread(lambda: q.join(timeout=60))
    wait_until_blocked(thread, q)
    restart_after(live, 2.0).join()
    assert q.get_many(10) == ["a", "b"]
    q.task_done()
    q.task_done()
    thread.join(30)
    assert outcome == [True]
    q.close()


@pytest.mark.slow
def test_a_get_without_timeout_gives_up_after_the_outage_limit(live: RedisServer) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"{live.url}?{LIMITS}&outage_limit=2", name="limit"
    )
    q.qsize()
    live.kill()
    started = time.monotonic()
    with pytest.raises(distqueue.BackendConnectionError):
        q.get()
    assert time.monotonic() - started < 2 + 1 + 1 + BOUND_SLACK
    q.close()


# -- a consumer stopped past its lease -------------------------------------------------------

STOPPABLE_CONSUMER = """
import sys, distqueue
q = distqueue.Queue(url=sys.argv[1], name=sys.argv[2])
message = q.get_message()
message.extend(1.0)
print("leased", flush=True)
sys.stdin.readline()  # stopped here, then resumed
print("acked" if message.ack() else "refused", flush=True)
print("nacked" if message.nack() else "refused", flush=True)
"""


@pytest.mark.slow
def test_a_consumer_stopped_past_its_lease_cannot_settle_the_new_delivery(
    live: RedisServer, tmp_path: Path
) -> None:
    import subprocess
    import sys

    name = f"stopped-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=live.url, name=name)
    q.put("job")
    script = tmp_path / "consumer.py"
    script.write_text(STOPPABLE_CONSUMER)
    child = subprocess.Popen(
        [sys.executable, str(script), live.url, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "leased"
        os.kill(child.pid, signal.SIGSTOP)
        message = q.get_message(timeout=10)  # its lease runs out: delivered again
        assert (message.item, message.deliveries) == ("job", 2)
        os.kill(child.pid, signal.SIGCONT)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "refused"
        assert child.stdout.readline().strip() == "refused"
        assert (q.in_flight(), q.unfinished_tasks) == (1, 1)
        assert message.ack() is True
        assert q.join(timeout=1)
    finally:
        child.kill()
        child.wait(10)
        q.close()


def test_a_delayed_put_whose_reply_is_lost_is_scheduled_once(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair(distqueue.PriorityQueue)
    proxy.drop_reply()
    faulty.put_many([(2, "b"), (1, "a")], delay=60)
    assert proxy.drops == 1
    assert (direct.qsize(), direct.scheduled(), direct.unfinished_tasks) == (0, 2, 2)


def test_a_deduplicated_put_whose_reply_is_lost_still_says_it_put(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair()
    proxy.drop_reply()
    assert faulty.put("x", dedup_key="k", dedup_for=60) is True  # the retry's own answer
    assert proxy.drops == 1
    assert direct.put("y", dedup_key="k", dedup_for=60) is False
    assert (direct.qsize(), direct.unfinished_tasks) == (1, 1)


def test_a_pause_whose_reply_is_lost_pauses_once(pair: Opened, proxy: FaultyProxy) -> None:
    faulty, direct = pair()
    direct.put("x")
    proxy.drop_reply()
    faulty.pause(60)
    assert proxy.drops == 1
    with pytest.raises(distqueue.Empty):
        direct.get(timeout=0.05)


# -- interrupted calls, restarts between calls, fork ------------------------------------------


class _Interrupted(Exception):
    """Raised by a signal handler in the middle of a call, as KeyboardInterrupt would be."""


def test_a_call_interrupted_before_its_reply_leaves_no_reply_for_the_next(
    pair: Opened, proxy: FaultyProxy
) -> None:
    faulty, direct = pair()
    faulty.put("first")  # a connection in the pool, which the next calls reuse

    def interrupt(signum: int, frame: Any) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        proxy.delay_reply(0.8)  # the reply comes after the interruption
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(_Interrupted):
            faulty.put("interrupted")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    proxy.heal()
    time.sleep(1.0)  # the held reply has come by now, to whichever connection it was on
    # each later call reads its own reply
    faulty.put("second")
    assert faulty.qsize() == 3
    assert faulty.get_many(10, timeout=0) == ["first", "interrupted", "second"]
    assert direct.qsize() == 0


def test_calls_go_on_after_the_server_restarts_between_them(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = RedisServer(require_binary("redis-server"), tmp_path)
    q: distqueue.Queue[int] = distqueue.Queue(url=f"{server.url}?{LIMITS}", name="restarted")
    try:
        with ThreadPoolExecutor(4) as threads:
            list(threads.map(q.put, range(8)))  # several connections in the pool
            assert sorted(q.get_many(10, timeout=0)) == list(range(8))
            server.kill()
            server.start()  # every one of them is gone
            list(threads.map(q.put, range(8)))
            assert sorted(q.get_many(10, timeout=0)) == list(range(8))
    finally:
        q.close()
        server.close()


# (the child only talks to Redis: the threads of pytest and the fixtures are not its concern)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_queue_used_on_both_sides_of_a_fork_loses_no_put(live: RedisServer) -> None:
    import multiprocessing

    name = f"forked-{uuid.uuid4().hex}"
    q: distqueue.Queue[str] = distqueue.Queue(url=live.url, name=name)
    q.put("before")  # request ids drawn before the fork: the child must not repeat them

    def child() -> None:
        for n in range(200):
            q.put(f"child-{n}")
        os._exit(0 if q.qsize() >= 200 else 1)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    for n in range(200):
        q.put(f"parent-{n}")
    process.join(60)
    assert process.exitcode == 0
    items = q.get_many(1000, timeout=0)
    assert sorted(items) == sorted(
        ["before", *(f"child-{n}" for n in range(200)), *(f"parent-{n}" for n in range(200))]
    )
    q.delete()
    q.close()
