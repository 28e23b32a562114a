"""Redis Sentinel: clients find the master through the sentinels, and follow a new one when the
master dies or is demoted, while producers, consumers and blocked calls go on.

The master, its replica and three sentinels are started once per session (tests/cluster.py); a
test that fails the master over leaves both servers running and in sync again.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cluster import SentinelGroup
from failover import assert_nothing_lost, run_through
from threads import run_in_thread, wait_until_blocked

import distqueue

pytestmark = pytest.mark.redis


def test_a_queue_through_the_sentinels_is_the_masters_queue(
    redis_sentinel: SentinelGroup, sentinel_url: str
) -> None:
    name = f"sentinel-{uuid.uuid4().hex}"
    with distqueue.Queue(url=sentinel_url, name=name, visibility_timeout=10) as q:
        q.put_many([1, 2, 3])
        message = q.get_message()
        assert message.ack()
        assert q.get() == 2
        q.task_done()
        with redis_sentinel.current_master().client() as master:
            assert master.llen(f"dq:{{{name}}}:items") == 1
        q.delete()


def test_an_unknown_service_is_a_connection_error_within_the_bound(sentinel_url: str) -> None:
    url = sentinel_url.replace("/mymaster/", "/nosuchmaster/") + "?retry_window=0.5"
    q: distqueue.Queue[Any] = distqueue.Queue(url=url, name="nowhere")
    started = time.monotonic()
    with pytest.raises(distqueue.BackendConnectionError, match="nosuchmaster"):
        q.put(1)
    assert time.monotonic() - started < 0.5 + 2 + 1
    q.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["killed", "demoted"])
def test_a_blocked_get_follows_the_new_master(
    redis_sentinel: SentinelGroup, sentinel_url: str, how: str
) -> None:
    name = f"sentinel-blocked-{uuid.uuid4().hex}"
    url = sentinel_url + "?retry_window=15"
    consumer: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name)
    producer: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name)
    try:
        producer.put("warm-up")
        assert consumer.get(timeout=5) == "warm-up"
        thread, result = run_in_thread(lambda: consumer.get(timeout=40))
        wait_until_blocked(thread, consumer)
        if how == "killed":
            old = redis_sentinel.current_master()
            redis_sentinel.kill_master_and_wait_for_promotion()
            redis_sentinel.restart_old_master(old)
        else:
            redis_sentinel.fail_over_by_hand()
        producer.put("after the fail-over")
        thread.join(20)
        assert not thread.is_alive(), "the blocked get did not wake on the new master"
        assert result == ["after the fail-over"]
    finally:
        redis_sentinel.wait_healthy()
        producer.delete()
        consumer.close()
        producer.close()


@pytest.mark.slow
def test_nothing_acknowledged_is_lost_when_the_master_dies_mid_run(
    redis_sentinel: SentinelGroup, sentinel_url: str
) -> None:
    old = redis_sentinel.current_master()
    try:
        run = run_through(
            sentinel_url + "?retry_window=15",
            f"failover-{uuid.uuid4().hex}",
            redis_sentinel.kill_master_and_wait_for_promotion,
        )
        redis_sentinel.restart_old_master(old)
    finally:
        redis_sentinel.wait_healthy()
    print("sentinel fail-over:", run.summary())
    assert_nothing_lost(run)
