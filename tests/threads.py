"""Calls run in a thread of the test, to be blocked, woken and inspected.

A test that needs "the other thread is blocked in its call now" waits for the backend to say
so, never for a fixed time:

* memory: the store's count of blocked calls (``MemoryBackend.waiting_threads``);
* Redis: the server's count of blocked clients (``INFO clients`` -> ``blocked_clients``; on a
  Cluster summed over the nodes, behind Sentinel the master's): every wait of the Redis
  backend is a blocking command (``BLPOP``). The count is the server's, so the test's server
  must have no other blocked clients: tests run one at a time and wake the calls they block;
* fakeredis (a queue opened with ``client=``): the thread itself, found waiting inside
  fakeredis's blocking command (its stack, read through ``sys._current_frames``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.cluster
import redis.sentinel


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``target`` in a thread; the list receives its result or its exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:  # the test inspects whatever happened
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_blocked(
    threads: threading.Thread | Sequence[threading.Thread],
    queue: Any,
    count: int = 1,
    timeout: float = 10.0,
) -> None:
    """Return once ``threads`` are all blocked in their calls on ``queue``'s backend.

    ``count`` is how many blocked calls to wait for on the queue's store or server (all of
    ``threads``, usually). Fails the test if a thread returns instead, or if the backend does
    not report the blocked calls within ``timeout`` seconds.
    """
    watched = [threads] if isinstance(threads, threading.Thread) else list(threads)
    blocked = _blocked_calls(queue, watched)
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        for thread in watched:
            assert thread.is_alive(), f"{thread.name}: the call returned instead of blocking"
        seen = blocked()
        if seen >= count:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"expected {count} blocked call(s) on {queue!r}, "
                f"the backend reported {seen} after {timeout} s"
            )
        time.sleep(0.002)


def _blocked_calls(queue: Any, threads: list[threading.Thread]) -> Callable[[], int]:
    """How to count the blocked calls of ``queue``'s backend."""
    backend = queue._backend
    if hasattr(backend, "waiting_threads"):
        return lambda: int(backend.waiting_threads)
    if queue.url is None:  # a client of the test's own: fakeredis
        return lambda: sum(_in_fakeredis_wait(thread) for thread in threads)
    return lambda: _blocked_clients(queue.url)


def assert_still_running(thread: threading.Thread, seconds: float) -> None:
    """Check that ``thread`` has not finished after ``seconds``: a check that something does
    NOT happen, which only time can make (not a way to wait for something)."""
    thread.join(seconds)
    assert thread.is_alive(), f"{thread.name}: the call finished within {seconds} s"


def _blocked_clients(url: str) -> int:
    """The blocked clients of the server(s) behind a Redis URL (the test servers' URLs carry
    no credentials; distqueue's own query parameters are left out)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    hosts = [_host_port(address) for address in parts.netloc.split(",")]
    client: Any
    if scheme.endswith("+cluster"):
        host, port = hosts[0]
        client = redis.cluster.RedisCluster(host=host, port=port)
        try:
            replies = client.info("clients", target_nodes=redis.cluster.RedisCluster.ALL_NODES)
            return sum(int(reply["blocked_clients"]) for reply in replies.values())
        finally:
            client.close()
    if scheme.endswith("+sentinel"):
        service = parts.path.strip("/").split("/")[0]
        sentinel: Any = redis.sentinel.Sentinel  # untyped in redis-py
        client = sentinel(hosts).master_for(service)
    else:
        client = redis.Redis.from_url(url.partition("?")[0])
    try:
        return int(client.info("clients")["blocked_clients"])
    finally:
        client.close()


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _in_fakeredis_wait(thread: threading.Thread) -> bool:
    """Whether ``thread`` is waiting inside a blocking command of fakeredis."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None or frame.f_code.co_name != "wait":  # threading.Condition.wait
        return False
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_blocking" and "fakeredis" in code.co_filename:
            return True
        frame = frame.f_back
    return False
