"""``?wait_replicas=N``: a change returns only once N replicas have it (Redis's WAIT, sent on the
same connection right after the script), so a fail-over cannot lose what a caller was told is
done. Real servers: a primary and a replica that the tests pause (SIGSTOP) to hold replication
back."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from faults import FaultyProxy
from servers import RedisServer, require_binary

import distqueue
from distqueue.backends.base import Kind
from distqueue.backends.redis import QueueKeys

QUICK = "wait_timeout=0.2&retry_window=1&socket_timeout=2"


class Pair:
    def __init__(self, directory: Path) -> None:
        binary = require_binary("redis-server")
        (directory / "primary").mkdir()
        (directory / "replica").mkdir()
        self.primary = RedisServer(binary, directory / "primary")
        self.replica = RedisServer(binary, directory / "replica")
        self.primary_client = redis.Redis(port=self.primary.port)
        # sync the replica at once, not after the default 5 s of waiting for more replicas
        self.primary_client.config_set("repl-diskless-sync-delay", 0)
        self.replica_client = redis.Redis(port=self.replica.port)
        self.replica_client.replicaof("127.0.0.1", self.primary.port)
        deadline = time.monotonic() + 30
        while self._synced_replicas() < 1:
            assert time.monotonic() < deadline, "the replica never came in sync"
            time.sleep(0.05)

    def _synced_replicas(self) -> int:
        info = self.primary_client.info("replication")
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave")
            and isinstance(value, dict)
            and value.get("state") == "online"
        )

    def pause_replica(self) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.resume_replica()
        self.replica_client.close()
        self.primary_client.close()
        self.replica.close()
        self.primary.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    servers = Pair(tmp_path)
    yield servers
    servers.close()


def _items_on(client: redis.Redis, name: str) -> int:
    return int(client.llen(QueueKeys(name, Kind.FIFO).items))


def test_a_put_returns_once_the_replica_has_the_item(pair: Pair) -> None:
    name = f"confirmed-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=f"{pair.primary.url}?wait_replicas=1", name=name)
    q.put_many(list(range(50)))
    q.put("one more")
    # WAIT confirmed it: the replica holds every item the moment the call returns
    assert _items_on(pair.replica_client, name) == 51
    assert q.get() == 0
    assert _items_on(pair.replica_client, name) == 50
    q.close()


def test_a_put_the_replica_cannot_confirm_is_an_unknown_outcome_not_a_silent_success(
    pair: Pair,
) -> None:
    name = f"unconfirmed-{uuid.uuid4().hex}"
    waiting: distqueue.Queue[Any] = distqueue.Queue(
        url=f"{pair.primary.url}?wait_replicas=1&{QUICK}", name=name
    )
    trusting: distqueue.Queue[Any] = distqueue.Queue(url=pair.primary.url, name=name)
    pair.pause_replica()
    started = time.monotonic()
    with pytest.raises(distqueue.OutcomeUnknownError, match="replica"):
        waiting.put("held back")
    assert time.monotonic() - started < 10, "the wait for the replica was not bounded"
    trusting.put("not waited for")  # the default: the primary's word is enough
    # it ran on the primary once, however often it was retried while waiting
    assert _items_on(pair.primary_client, name) == 2
    pair.resume_replica()
    assert trusting.get_many(10) == ["held back", "not waited for"]
    waiting.close()
    trusting.close()


def test_a_get_the_replica_cannot_confirm_is_an_unknown_outcome_too(pair: Pair) -> None:
    name = f"taken-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"{pair.primary.url}?wait_replicas=1&{QUICK}", name=name
    )
    q.put_many(["a", "b"])
    pair.pause_replica()
    with pytest.raises(distqueue.OutcomeUnknownError):
        q.get_nowait()
    pair.resume_replica()
    assert _items_on(pair.primary_client, name) == 1  # taken once
    q.close()


def test_without_any_replica_waiting_for_one_fails_within_its_bounds(pair: Pair) -> None:
    pair.replica_client.replicaof("no", "one")
    name = f"alone-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"{pair.primary.url}?wait_replicas=1&{QUICK}", name=name
    )
    started = time.monotonic()
    with pytest.raises(distqueue.OutcomeUnknownError, match="0 of the 1 replica"):
        q.put("x")
    assert time.monotonic() - started < 10
    q.close()


def test_a_retry_after_a_lost_reply_is_confirmed_without_running_twice(pair: Pair) -> None:
    proxy = FaultyProxy(pair.primary.port)
    name = f"lost-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=proxy.url("wait_replicas=1"), name=name)
    try:
        q.qsize()  # connected: the reply dropped is the put's, not the handshake's
        proxy.drop_reply()
        q.put("once")
        assert proxy.drops == 1
        assert _items_on(pair.primary_client, name) == 1
        assert _items_on(pair.replica_client, name) == 1
    finally:
        q.close()
        proxy.close()


@pytest.mark.parametrize(
    "query",
    [
        "wait_replicas=-1",
        "wait_replicas=one",
        "wait_replicas=1.5",
        "wait_timeout=5&wait_replicas=1",
    ],
)
def test_malformed_replica_settings_are_refused_by_name(query: str) -> None:
    with pytest.raises(ValueError, match="wait_"):
        distqueue.Queue(url=f"redis://127.0.0.1:1/0?{query}", name="never-opened")


def test_a_retry_after_a_lost_reply_still_waits_for_the_replica(pair: Pair) -> None:
    # The retry runs on a new connection and finds the first reply; it must not take that
    # connection's empty history as confirmation: while the replica is held back, the call
    # ends unknown, never as a success.
    proxy = FaultyProxy(pair.primary.port)
    name = f"lost-held-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(url=proxy.url(f"wait_replicas=1&{QUICK}"), name=name)
    try:
        q.qsize()  # connected: the reply dropped is the put's, not the handshake's
        pair.pause_replica()
        proxy.drop_reply()
        with pytest.raises(distqueue.OutcomeUnknownError):
            q.put("once")
        assert proxy.drops == 1
        assert _items_on(pair.primary_client, name) == 1
    finally:
        pair.resume_replica()
        q.close()
        proxy.close()


def test_on_a_cluster_each_change_is_confirmed_by_its_shards_replica(cluster_url: str) -> None:
    names = [f"confirmed-{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    queues: list[distqueue.Queue[Any]] = [
        distqueue.Queue(url=f"{cluster_url}?wait_replicas=1", name=name, visibility_timeout=30)
        for name in names
    ]
    try:
        for q in queues:
            q.put_many(["a", "b"])
            message = q.get_message()
            assert message.ack()
            assert q.get() == "b"
            q.task_done()
            assert q.join(timeout=5)
    finally:
        for q in queues:
            q.delete()
            q.close()


def test_on_a_cluster_asking_for_more_replicas_than_a_shard_has_fails(cluster_url: str) -> None:
    name = f"too-many-{uuid.uuid4().hex}"
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"{cluster_url}?wait_replicas=2&{QUICK}", name=name
    )
    try:
        with pytest.raises(distqueue.OutcomeUnknownError, match="1 of the 2 replica"):
            q.put("x")
        assert q.qsize() == 1  # on the master all the same, once
    finally:
        q.delete()
        q.close()
