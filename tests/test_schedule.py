"""Periodic puts: the ticks of a schedule, the missed-tick policy, and exactly one put per tick
with three competing scheduler processes on a real server."""

from __future__ import annotations

import datetime
import signal
from pathlib import Path
from typing import Any

import pytest
import redis
from processes import Workers, fresh_name, wait_until

import distqueue
from distqueue.backends.base import Kind
from distqueue.backends.redis.keys import QueueKeys
from distqueue.schedule import Periodic, Scheduler

UTC = datetime.timezone.utc


class FakeClock:
    def __init__(self, start: datetime.datetime) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = datetime.datetime.fromtimestamp(seconds, UTC)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ValueError),
        ({"every": 1, "cron": "* * * * *", "tz": "UTC"}, ValueError),
        ({"every": 0}, ValueError),
        ({"cron": "* * * * *"}, ValueError),  # a cron needs its zone
        ({"cron": "61 * * * *", "tz": "UTC"}, ValueError),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, ValueError),
        ({"every": 5, "grace": -1}, ValueError),
    ],
)
def test_bad_schedules_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Periodic("s", "item", **kwargs)


def test_cron_ticks_are_read_in_the_given_zone() -> None:
    daily = Periodic("daily", "x", cron="0 9 * * *", tz="Europe/Paris")
    summer = datetime.datetime(2026, 7, 1, 8, 0, tzinfo=UTC)  # 10:00 in Paris
    assert daily.latest_tick(summer) == datetime.datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    winter = datetime.datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 09:00 in Paris: a tick
    assert daily.latest_tick(winter) == datetime.datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert daily.next_tick(winter) == datetime.datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_each_tick_is_put_once_and_missed_ticks_are_skipped() -> None:
    q: distqueue.Queue[Any] = distqueue.Queue()
    clock = FakeClock(datetime.datetime.fromtimestamp(105, UTC))
    every = Periodic("every10", "tick", every=10, grace=3)
    scheduler = Scheduler(q, [every], clock=clock)
    assert scheduler.seconds_to_next() == 5
    assert scheduler.run_pending() == 0  # tick 100 is 5 s old: beyond its grace
    clock.at(110.5)
    assert scheduler.run_pending() == 1
    assert scheduler.run_pending() == 0  # the same tick again: nothing
    clock.at(200.2)  # ticks 120 ... 190 missed: only 200 is put
    assert scheduler.run_pending() == 1
    assert q.qsize() == 2
    other = Scheduler(q, [every], clock=clock)  # a second scheduler, same tick: refused
    assert other.run_pending() == 0
    assert q.qsize() == 2


@pytest.mark.slow
def test_three_competing_scheduler_processes_put_each_tick_exactly_once(
    tmp_path: Path, redis_url: str
) -> None:
    name = fresh_name("periodic")
    workers = Workers(tmp_path, redis_url)  # only for its environment and logs
    command = [
        "schedule", "--url", redis_url, "--queue", name, "--name", "beat",
        "--every", "0.5", "--item", '"beat"',
    ]  # fmt: skip
    processes = [workers.start_command(*command) for _ in range(3)]
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: q.qsize() >= 8, "8 ticks put")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(30) == 0, workers.log(process)
    claims: list[Any] = client.zrange(QueueKeys(name, Kind.FIFO).dedup, 0, -1)
    ticks = sorted(int(claim.decode().rsplit(":", 1)[1]) for claim in claims)
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items == ["beat"] * len(ticks)  # one put per claimed tick, none twice
    assert ticks == list(range(ticks[0], ticks[-1] + 500, 500))  # and no tick skipped
    client.close()
    q.delete()
    q.close()
    workers.close()
