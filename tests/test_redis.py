"""What only a shared Redis backend has: bad data on the server, a server that goes away, keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from servers import RedisServer, free_port, require_binary
from threads import run_in_thread, wait_until_blocked

import distqueue
from distqueue.backends.base import Kind
from distqueue.backends.redis import QueueKeys


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may kill and restart."""
    server = RedisServer(require_binary("redis-server"), tmp_path)
    yield server
    server.kill()


def fresh_name() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_every_key_of_a_queue_shares_one_hash_tag(redis_url: str, raw: redis.Redis) -> None:
    name = fresh_name()
    q: distqueue.PriorityQueue[Any] = distqueue.PriorityQueue(2, url=redis_url, name=name)
    q.put((1, "a"))
    q.get()
    q.task_done()
    q.shutdown()
    keys = [k.decode() if isinstance(k, bytes) else k for k in raw.keys(f"*{name}*")]
    assert keys, "the queue wrote no keys"
    assert all(k.startswith(f"dq:{{{name}}}:") for k in keys), keys
    q.close()


def test_payloads_are_readable_in_redis_cli(redis_url: str, raw: redis.Redis) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    q.put({"job": "resize", "size": [640, 480]})
    assert raw.lrange(f"dq:{{{q.name}}}:items", 0, -1) == [b'{"job":"resize","size":[640,480]}']
    q.close()


def test_a_key_of_the_wrong_type_is_reported_by_name(redis_url: str, raw: redis.Redis) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    items_key = f"dq:{{{q.name}}}:items"
    raw.set(items_key, "not a list")
    with pytest.raises(distqueue.WrongTypeError) as info:
        q.put("x")
    assert info.value.key == items_key
    assert items_key in str(info.value)
    assert isinstance(info.value, TypeError)
    with pytest.raises(distqueue.WrongTypeError):
        q.get_nowait()
    assert raw.get(items_key) == b"not a list"  # nothing changed
    q.close()


@pytest.mark.parametrize("cls", [distqueue.Queue, distqueue.PriorityQueue])
def test_a_payload_pushed_by_hand_that_cannot_be_decoded_is_dead_lettered(
    redis_url: str, raw: redis.Redis, cls: Any
) -> None:
    q = cls(url=redis_url, name=fresh_name())
    items_key = f"dq:{{{q.name}}}:items"
    if cls is distqueue.PriorityQueue:
        raw.zadd(items_key, {b"\x00garbage": 0})  # sorts before anything distqueue writes
        q.put((1, "next"))
        expected = (1, "next")
    else:
        raw.lpush(items_key, b"\xff{not json")
        q.put("next")
        expected = "next"  # type: ignore[assignment]  # the FIFO case puts a string
    with pytest.raises(distqueue.DeserializationError) as info:
        q.get(timeout=1)
    assert info.value.queue == q.name
    assert q.name in str(info.value)
    assert isinstance(info.value, ValueError)
    assert q.get(timeout=1) == expected
    [letter] = q.dead_letters()
    assert letter.payload == info.value.payload
    assert letter.item is None
    assert "could not be decoded" in letter.error
    # never counted, so not counted as done: join() waits exactly for the real item
    assert q.unfinished_tasks == 1
    q.task_done()
    assert q.join(timeout=1)
    with pytest.raises(ValueError, match="too many"):
        q.task_done()
    q.close()


def test_get_many_returns_the_good_items_and_dead_letters_the_bad(
    redis_url: str, raw: redis.Redis
) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    q.put("first")
    raw.lpush(f"dq:{{{q.name}}}:items", b"garbage")
    q.put("last")
    assert q.get_many(10) == ["first", "last"]
    assert [d.payload for d in q.dead_letters()] == [b"garbage"]
    q.close()


def test_a_leased_payload_that_cannot_be_decoded_is_dead_lettered(
    redis_url: str, raw: redis.Redis
) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=redis_url, name=fresh_name(), visibility_timeout=5
    )
    raw.lpush(f"dq:{{{q.name}}}:items", b"{broken")
    q.put("fine")
    with pytest.raises(distqueue.DeserializationError):
        q.get(timeout=1)
    assert q.in_flight() == 0
    assert q.get(timeout=1) == "fine"
    q.task_done()
    assert [d.payload for d in q.dead_letters()] == [b"{broken"]
    assert q.unfinished_tasks == 0
    q.close()


def test_a_payload_written_by_another_serializer_is_dead_lettered(redis_url: str) -> None:
    name = fresh_name()
    pickled: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name, serializer="pickle")
    plain: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    pickled.put(("a", 1))
    with pytest.raises(distqueue.DeserializationError, match="json"):
        plain.get(timeout=1)
    # Not counted as done (a payload that cannot be read may never have been counted): join()
    # waits until someone who can read it handles it.
    assert (plain.qsize(), plain.unfinished_tasks, len(plain.dead_letters())) == (0, 1, 1)
    assert pickled.requeue_dead() == 1
    assert pickled.get(timeout=1) == ("a", 1)
    pickled.task_done()
    pickled.task_done()  # the requeued dead letter counted once more
    assert plain.join(timeout=1)
    pickled.close()
    plain.close()


def test_pickle_is_used_only_when_asked_for(redis_url: str) -> None:
    name = fresh_name()
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name, serializer="pickle")
    q.put(Path("/tmp"))
    assert q.get() == Path("/tmp")
    default: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    with pytest.raises(TypeError, match="PosixPath"):
        default.put(Path("/tmp"))
    q.close()
    default.close()


def test_a_server_that_is_down_gives_a_connection_error_not_a_hang() -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=f"redis://127.0.0.1:{free_port()}/0", name=fresh_name()
    )
    with pytest.raises(distqueue.BackendConnectionError) as info:
        q.put(1)
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(distqueue.BackendConnectionError):
        q.get(timeout=1)
    q.close()


def test_a_blocked_get_survives_a_server_restart(own_redis: RedisServer) -> None:
    name = fresh_name()
    consumer: distqueue.Queue[Any] = distqueue.Queue(url=own_redis.url, name=name)
    thread, outcome = run_in_thread(lambda: consumer.get(timeout=60))
    wait_until_blocked(thread, consumer)
    own_redis.kill()
    own_redis.start()
    producer: distqueue.Queue[Any] = distqueue.Queue(url=own_redis.url, name=name)
    wait_until_blocked(thread, producer)  # the consumer reconnected and blocks again
    producer.put("after the restart")
    thread.join(30)
    assert outcome == ["after the restart"]
    consumer.close()
    producer.close()


def test_scripts_are_reloaded_after_the_server_forgets_them(
    redis_url: str, raw: redis.Redis
) -> None:
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    q.put(1)
    raw.script_flush()
    q.put(2)
    assert q.get_many(2) == [1, 2]
    q.close()


def _calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _attempts(client: redis.Redis, command: str) -> int:
    """Calls of ``command`` the server took, failed or refused ones included."""
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return sum(int(stats.get(field, 0)) for field in ("calls", "failed_calls", "rejected_calls"))


def test_scripts_run_as_functions_loaded_once_and_again_after_a_flush(
    redis_url: str, raw: redis.Redis
) -> None:
    from distqueue.backends.scripts import function_library

    library = function_library()[0].partition("\n")[0].partition("name=")[2]
    raw.function_flush()
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    q.put(1)
    assert [entry[1] for entry in raw.function_list(library)] == [library.encode()]
    fcalls, evals = _calls(raw, "fcall"), _calls(raw, "evalsha") + _calls(raw, "eval")
    q.put(2)
    assert q.get() == 1
    assert _calls(raw, "fcall") == fcalls + 2
    assert _calls(raw, "evalsha") + _calls(raw, "eval") == evals
    raw.function_flush()  # as a restart without persistence would
    q.put(3)
    assert raw.function_list(library)
    assert q.get_many(5) == [2, 3]
    q.close()


@pytest.mark.parametrize("denied", ["function", "fcall"])
def test_scripts_fall_back_to_evalsha_for_a_user_denied_functions(
    redis_url: str, raw: redis.Redis, denied: str
) -> None:
    import asyncio

    import distqueue.aio

    user = f"no{denied}-{uuid.uuid4().hex[:8]}"
    raw.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", f"-{denied}"]
    )
    raw.function_flush()
    url = redis_url.replace("redis://", f"redis://{user}:secret@")
    name = fresh_name()

    async def through_asyncio() -> list[Any]:
        aq: distqueue.aio.Queue[Any] = distqueue.aio.Queue(url=url, name=name)
        try:
            await aq.put(3)
            return [await aq.get(), await aq.get()]
        finally:
            await aq.aclose()

    try:
        q: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name)
        q.put(1)
        tried = _attempts(raw, "fcall"), _attempts(raw, "function|load")
        q.put(2)  # the script knows now: EVALSHA straight away
        assert (_attempts(raw, "fcall"), _attempts(raw, "function|load")) == tried
        assert q.get() == 1
        assert asyncio.run(through_asyncio()) == [2, 3]
        assert q.qsize() == 0
        assert raw.function_list() == []
        q.close()
    finally:
        raw.acl_deluser(user)


def test_a_server_without_functions_costs_each_client_one_refused_fcall(
    redis_url: str, raw: redis.Redis
) -> None:
    """What the first call learns (FCALL is refused) serves every script of the same queue or
    cache, blocking and asyncio: none of them tries FCALL again."""
    import asyncio

    import distqueue.aio

    user = f"nofcall-{uuid.uuid4().hex[:8]}"
    raw.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-fcall"]
    )
    url = redis_url.replace("redis://", f"redis://{user}:secret@")
    name = fresh_name()

    def refused() -> int:
        return _attempts(raw, "fcall")

    async def through_asyncio() -> list[int]:
        seen = []
        async with distqueue.aio.Queue(url=url, name=name) as aq:
            await aq.put("a")
            seen.append(refused())
            assert await aq.get() == "a"
            aq.task_done()
            await aq.join()
        async with distqueue.aio.Cache(url, namespace=name) as cache:
            assert await cache.incr("n") == 1
            seen.append(refused())
            assert await cache.set("b", b"x")
            assert await cache.append("b", b"y")
            _, token = await cache.gets("b")
            assert token is not None and await cache.cas("b", b"z", token)
            assert await cache.decr("n") == 0
        seen.append(refused())
        return seen

    try:
        q: distqueue.Queue[Any] = distqueue.Queue(url=url, name=name)
        before = refused()
        q.put(1)
        assert refused() == before + 1
        assert q.get() == 1
        q.task_done()
        q.join()
        q.shutdown()
        assert refused() == before + 1  # take, task_done, join and shutdown: no FCALL
        q.close()
        cache = distqueue.Cache(url, namespace=name)
        assert cache.incr("n") == 1
        assert refused() == before + 2
        assert cache.set("b", b"x")
        assert cache.append("b", b"y")
        _, token = cache.gets("b")
        assert token is not None and cache.cas("b", b"z", token)
        assert cache.decr("n") == 0
        assert refused() == before + 2
        cache.close()
        raw.delete(f"dq:{{{name}}}:meta")  # (shut down above) a fresh queue of that name
        assert asyncio.run(through_asyncio()) == [before + 3, before + 4, before + 4]
    finally:
        raw.acl_deluser(user)


def test_a_queue_travels_to_another_process_by_pickle(redis_url: str) -> None:
    import pickle

    q: distqueue.PriorityQueue[Any] = distqueue.PriorityQueue(5, url=redis_url, name=fresh_name())
    copy = pickle.loads(pickle.dumps(q))
    assert (copy.name, copy.maxsize, copy.url, type(copy)) == (q.name, 5, redis_url, type(q))
    q.put((1, "x"))
    assert copy.get(timeout=1) == (1, "x")
    q.close()
    copy.close()


def test_a_memory_queue_refuses_to_travel_to_another_process() -> None:
    import pickle

    with pytest.raises(TypeError, match="memory"):
        pickle.dumps(distqueue.Queue())


def test_a_blocked_get_sees_a_shutdown_whose_wake_up_was_lost(
    redis_url: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distqueue.backends.connection as connection

    monkeypatch.setattr(connection, "BLOCK_SLICE", 0.3)
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=fresh_name())
    thread, outcome = run_in_thread(lambda: q.get(timeout=30))
    wait_until_blocked(thread, q)
    # the flag without its token: as if the process that took the token died before passing
    # it on
    raw.hset(f"dq:{{{q.name}}}:meta", "shutdown", "1")
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], distqueue.ShutDown), outcome
    q.close()


@pytest.mark.parametrize("cls", [distqueue.Queue, distqueue.PriorityQueue])
def test_a_put_refused_by_a_corrupted_count_writes_nothing(
    redis_url: str, raw: redis.Redis, cls: Any
) -> None:
    q = cls(url=redis_url, name=fresh_name())
    raw.hset(f"dq:{{{q.name}}}:meta", "unfinished", "garbage")
    with pytest.raises(distqueue.BackendError, match="not a number"):
        q.put((1, "x"))
    with pytest.raises(distqueue.BackendError, match="not a number"):
        q.put_many([(1, "x"), (2, "y")])
    assert q.qsize() == 0
    q.close()


@pytest.mark.parametrize("name", ["}starts-with-a-brace", "a}b", "{x}", "plain"])
def test_every_key_of_any_name_is_in_one_cluster_slot(
    redis_url: str, raw: redis.Redis, name: str
) -> None:
    from redis.crc import key_slot

    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name, visibility_timeout=30)
    q.delete()
    q.put_many(["a", "b"])
    assert q.get() == "a"
    q.get_message().reject("no")
    keys = set(QueueKeys(q.name, Kind.FIFO).types)
    assert {key_slot(key.encode()) for key in keys} == {key_slot(next(iter(keys)).encode())}
    assert raw.exists(*keys) >= 4  # the keys used are those named
    q.delete()
    q.close()


def test_one_name_opened_as_two_kinds_is_refused(redis_url: str) -> None:
    name = fresh_name()
    fifo: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    lifo: distqueue.LifoQueue[Any] = distqueue.LifoQueue(url=redis_url, name=name)
    fifo.put("x")
    with pytest.raises(ValueError, match="fifo queue, not a lifo"):
        lifo.put("y")
    with pytest.raises(ValueError, match="fifo queue, not a lifo"):
        lifo.get_nowait()
    assert fifo.get_many(10) == ["x"]
    fifo.delete()  # the name is free again, for any kind
    lifo.put("y")
    assert lifo.get_nowait() == "y"
    fifo.close()
    lifo.close()


def test_a_server_out_of_memory_refuses_puts_but_lets_consumers_drain_it(
    own_redis: RedisServer,
) -> None:
    client = redis.Redis(port=own_redis.port)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 2_000_000)
    q: distqueue.Queue[Any] = distqueue.Queue(
        url=own_redis.url, name=fresh_name(), visibility_timeout=30
    )
    blob = "x" * 20_000
    put = 0
    with pytest.raises(distqueue.BackendError, match="OOM") as info:
        for _ in range(1000):
            q.put_many([blob] * 10)
            put += 10
    assert not isinstance(info.value, distqueue.BackendConnectionError)
    assert put > 0 and q.qsize() == put  # the refused batch added nothing
    # every way out of the full server still works
    message = q.get_message()
    assert message.ack()
    assert q.get() == blob
    q.task_done()
    assert len(q.get_many(put)) == put - 2
    # the next call deletes the reply the last one kept for a retry (it held every item)
    q.task_done()
    q.delete()
    q.put("room again")
    assert q.get() == "room again"
    q.close()
    client.close()


def test_replies_kept_for_retries_do_not_pile_up(redis_url: str, raw: redis.Redis) -> None:
    # Each change keeps its reply for a retry; the next call of the same client deletes the
    # reply it received, so a busy queue holds a reply or two, not a minute of traffic.
    name = fresh_name()
    q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
    for _ in range(200):
        q.put("x" * 1000)
        assert q.get() == "x" * 1000
        q.task_done()
    replies = list(raw.scan_iter(match=f"dq:{{{name}}}:r:*", count=1000))
    assert 1 <= len(replies) <= 2, replies
    q.delete()
    q.close()
