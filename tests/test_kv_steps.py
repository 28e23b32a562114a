"""The cache's operations as generators of backend calls, and the Redis backend's behaviour as
steps with no I/O: what the drivers do with a call's error and with a cancellation, that every
call an operation makes exists on every backend, and what the Redis protocol sends and
decides, step by step. No server here: the real servers' tests are in ``test_cache*.py`` and
``test_aio_cache*.py``."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Generator
from typing import Any

import pytest
import redis.crc
import redis.exceptions

import distqueue.cacheops
import distqueue.kv.values
from distqueue.backends.connection import RedisOptions, Retrier
from distqueue.backends.scripts import NotSent
from distqueue.errors import (
    BackendConnectionError,
    BackendError,
    OutcomeUnknownError,
    WrongTypeError,
)
from distqueue.kv.aioredis import AsyncRedisBackend
from distqueue.kv.base import ServerHealth
from distqueue.kv.memcached import MemcachedBackend
from distqueue.kv.memory import MemoryBackend
from distqueue.kv.redis import RedisBackend
from distqueue.kv.redisprotocol import Commands, RedisKVProtocol, RunScript
from distqueue.kv.steps import KVCall, KVOp, adrive, call, drive

ONLY_BLOCKING = {"publish", "publish_many", "wait_item"}
"""Calls only the (blocking) results store makes."""


def test_every_call_an_operation_makes_is_a_method_of_every_backend() -> None:
    sources = [inspect.getsource(distqueue.cacheops), inspect.getsource(distqueue.kv.values)]
    names = {name for text in sources for name in re.findall(r'\bcall\(\s*"(\w+)"', text)}
    assert {"get", "get_many", "set_many", "incr", "add"} <= names  # the pattern finds them
    for backend in (MemoryBackend, MemcachedBackend, RedisBackend):
        missing = sorted(name for name in names if not callable(getattr(backend, name, None)))
        assert not missing, f"{backend.__name__} lacks {missing}"
    for name in names - ONLY_BLOCKING:
        method = getattr(AsyncRedisBackend, name, None)
        assert inspect.iscoroutinefunction(method), f"AsyncRedisBackend.{name} is not async"


class Recorder:
    """A backend whose ``get`` fails once with ``error``, then answers ``b"v"``."""

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.calls: list[str] = []

    def get(self, key: bytes) -> bytes:
        self.calls.append("get")
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return b"v"


def read_twice() -> KVOp[list[Any]]:
    seen: list[Any] = []
    for _ in range(2):
        try:
            seen.append((yield call("get", b"k")))
        except BackendError as exc:
            seen.append(f"error: {exc}")
    return seen


def test_drive_throws_a_call_s_error_into_the_operation_where_it_yielded() -> None:
    backend = Recorder(BackendError("down"))
    assert drive(read_twice(), backend) == ["error: down", b"v"]
    assert backend.calls == ["get", "get"]


def test_an_error_the_operation_does_not_catch_reaches_the_caller() -> None:
    def once() -> KVOp[Any]:
        return (yield call("get", b"k"))

    with pytest.raises(ValueError, match="refused"):
        drive(once(), Recorder(ValueError("refused")))


def test_a_cancelled_asyncio_drive_closes_the_operation_and_makes_no_later_call() -> None:
    made: list[str] = []
    closed: list[bool] = []

    class Slow:
        async def get(self, key: bytes) -> bytes:
            made.append("get")
            await asyncio.Event().wait()  # never answers
            return b""

    def operation() -> Generator[KVCall, Any, None]:
        try:
            yield call("get", b"a")
            yield call("get", b"b")
        finally:
            closed.append(True)

    async def main() -> None:
        task = asyncio.ensure_future(adrive(operation(), Slow()))
        while not made:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert made == ["get"] and closed == [True]


# -- the Redis protocol, step by step -----------------------------------------------------------


def protocol(cluster: bool = False) -> RedisKVProtocol:
    options = RedisOptions(retry_window=0.5)
    return RedisKVProtocol(
        ServerHealth("Redis test", 1.0), Retrier(options, "test"), cluster=cluster
    )


def first_step(operation: Generator[Any, Any, Any]) -> Any:
    return next(operation)


def finish(operation: Generator[Any, Any, Any], reply: Any) -> Any:
    with pytest.raises(StopIteration) as done:
        operation.send(reply)
    return done.value.value


def test_get_many_on_a_cluster_sends_one_mget_per_slot_and_puts_the_replies_back() -> None:
    keys = [f"ns:v:{i}".encode() for i in range(40)]
    operation = protocol(cluster=True).get_many(keys)
    step = first_step(operation)
    assert isinstance(step, Commands) and not step.transaction
    assert len(step.commands) == len({redis.crc.key_slot(key) for key in keys}) > 1
    for command in step.commands:
        assert command[0] == "MGET"
        assert len({redis.crc.key_slot(key) for key in command[1:]}) == 1
    replies = [
        [key if key != b"ns:v:7" else None for key in command[1:]] for command in step.commands
    ]
    found, failures = finish(operation, replies)
    assert failures == [] and found == {key: key for key in keys if key != b"ns:v:7"}


def test_get_many_on_one_server_is_one_mget_and_a_failure_is_for_every_key() -> None:
    keys = [b"a", b"b"]
    operation = protocol().get_many(keys)
    assert first_step(operation) == Commands((("MGET", b"a", b"b"),), "a read")
    with pytest.raises(StopIteration) as done:
        operation.throw(BackendConnectionError("down"))
    found, failures = done.value.value
    assert found == {} and [failure.keys for failure in failures] == [keys]


def test_a_counter_update_is_a_script_whose_reply_key_shares_the_key_s_slot() -> None:
    for key in (b"ns:v:n", b"ns:v:{tag}x", b"ns:v:}odd"):
        operation = protocol().incr(key, 5, 60.0)
        step = first_step(operation)
        assert isinstance(step, RunScript) and step.file == "kv_counter.lua"
        reply_key = step.args[1]
        assert step.args[0] == reply_key and step.args[2:] == ("incr", 5, 60000)
        assert redis.crc.key_slot(reply_key.encode()) == redis.crc.key_slot(key)
        assert finish(operation, 7) == 7


def test_each_call_has_its_own_request_id() -> None:
    kv = protocol()
    first = first_step(kv.incr(b"n", 1, None))
    second = first_step(kv.incr(b"n", 1, None))
    assert first.args[1] != second.args[1]


def test_an_attempt_decides_what_each_failure_means() -> None:
    kv = protocol()
    script = first_step(kv.incr(b"n", 1, None))
    read = first_step(kv.get(b"k"))
    started = time.monotonic()

    pause = kv.attempt(script).failed(redis.exceptions.ConnectionError("reset"), started)
    assert 0 < pause <= 0.5  # a lost connection is retried, under the same request id
    with pytest.raises(OutcomeUnknownError, match="may or may not"):
        kv.attempt(script).failed(redis.exceptions.TimeoutError("silent"), started)
    with pytest.raises(BackendConnectionError) as refused:
        kv.health.succeeded()
        kv.attempt(read).failed(NotSent(redis.exceptions.TimeoutError("connect")), started)
    assert not isinstance(refused.value, OutcomeUnknownError)
    kv.health.succeeded()
    with pytest.raises(WrongTypeError):
        kv.attempt(script).failed(redis.exceptions.ResponseError("NOTCOUNTER"), started)
    with pytest.raises(BackendError, match="refused a command"):
        kv.attempt(read).failed(redis.exceptions.ResponseError("ERR odd"), started)
    with pytest.raises(KeyError):  # not redis-py's: raised as it is
        kv.attempt(read).failed(KeyError("ours"), started)


def test_a_server_that_just_failed_is_not_tried() -> None:
    kv = protocol()
    kv.health.failed(redis.exceptions.ConnectionError("refused"))
    with pytest.raises(BackendConnectionError, match="is down"):
        kv.attempt(first_step(kv.get(b"k")))
