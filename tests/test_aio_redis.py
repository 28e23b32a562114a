"""distqueue.aio on Redis specifically: hostile data in the queue's keys, a client of the
caller's own, Sentinel, and the keys and payloads shared with the blocking classes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

import distqueue
import distqueue.aio as aio

pytestmark = pytest.mark.redis


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def fresh_name() -> str:
    return f"aio-redis-{uuid.uuid4().hex}"


def test_the_same_name_writes_the_same_keys_and_payloads(redis_url: str, raw: redis.Redis) -> None:
    async def body() -> None:
        name = fresh_name()
        async with aio.Queue(url=redis_url, name=name) as q:
            await q.put({"job": "resize", "size": (640, 480)})
        assert raw.lrange(f"dq:{{{name}}}:items", 0, -1) == [
            b'{"job":"resize","size":{"$tuple":[640,480]}}'
        ]
        sync_q: distqueue.Queue[Any] = distqueue.Queue(url=redis_url, name=name)
        assert sync_q.get(timeout=5) == {"job": "resize", "size": (640, 480)}
        sync_q.delete()
        sync_q.close()

    asyncio.run(body())


def test_a_payload_pushed_by_hand_is_dead_lettered_and_the_next_item_comes(
    redis_url: str, raw: redis.Redis
) -> None:
    async def body() -> None:
        async with aio.Queue(url=redis_url, name=fresh_name()) as q:
            raw.lpush(f"dq:{{{q.name}}}:items", b"\xff{not json")
            await q.put("next")
            with pytest.raises(distqueue.DeserializationError) as info:
                await q.get()
            assert info.value.queue == q.name
            assert await q.get() == "next"
            [letter] = await q.dead_letters()
            assert letter.payload == b"\xff{not json" and letter.item is None
            await q.delete()

    asyncio.run(body())


def test_a_key_of_the_wrong_type_is_reported_by_name(redis_url: str, raw: redis.Redis) -> None:
    async def body() -> None:
        async with aio.Queue(url=redis_url, name=fresh_name()) as q:
            items_key = f"dq:{{{q.name}}}:items"
            raw.set(items_key, "not a list")
            with pytest.raises(distqueue.WrongTypeError) as info:
                await q.put("x")
            assert info.value.key == items_key
            with pytest.raises(distqueue.WrongTypeError):
                await q.get(timeout=0)
            assert raw.get(items_key) == b"not a list"
            raw.delete(items_key)

    asyncio.run(body())


def test_a_queue_of_another_kind_is_a_value_error(redis_url: str) -> None:
    async def body() -> None:
        name = fresh_name()
        async with aio.Queue(url=redis_url, name=name) as q:
            await q.put(1)
            async with aio.LifoQueue(url=redis_url, name=name) as lifo:
                with pytest.raises(ValueError, match="fifo queue"):
                    await lifo.put(2)
            await q.delete()

    asyncio.run(body())


def test_a_client_of_the_callers_own_works_and_is_not_closed(redis_url: str) -> None:
    async def body() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        async with aio.Queue(client=client, name=fresh_name()) as q:
            await q.put("x")
            assert await q.get(timeout=0) == "x"
            assert await q.size() == 0
            with pytest.raises(TypeError, match="need a url"):
                q.get_nowait()
        assert await client.ping()  # still open
        await client.aclose()

    asyncio.run(body())


def test_a_blocking_client_is_refused_with_a_type_error(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(TypeError, match="asyncio client"):
        aio.Queue(client=client)
    client.close()


def test_an_unknown_query_parameter_is_a_value_error(redis_url: str) -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        aio.Queue(url=redis_url + "?nope=1")


@pytest.mark.slow
def test_a_sentinel_url_reaches_the_master(sentinel_url: str) -> None:
    async def body() -> None:
        name = fresh_name()
        async with aio.Queue(url=sentinel_url, name=name) as q:
            await q.put("via sentinel")
            sync_q: distqueue.Queue[str] = distqueue.Queue(url=sentinel_url, name=name)
            assert sync_q.get(timeout=5) == "via sentinel"
            getter = asyncio.ensure_future(q.get())
            await asyncio.sleep(0)
            sync_q.put("back")
            assert await asyncio.wait_for(getter, 30) == "back"
            sync_q.close()
            await q.delete()

    asyncio.run(body())


def test_wait_replicas_confirms_each_change_on_the_replica(tmp_path: Path) -> None:
    from test_replicas import QUICK, Pair

    pair = Pair(tmp_path)

    async def body() -> None:
        name = fresh_name()
        url = f"{pair.primary.url}?wait_replicas=1&{QUICK}"
        items_key = f"dq:{{{name}}}:items"
        async with aio.Queue(url=url, name=name) as q:
            await q.put_many(list(range(10)))
            await q.put("one more")
            # WAIT confirmed it: the replica holds every item the moment the call returns
            assert pair.replica_client.llen(items_key) == 11
            assert await q.get() == 0
            assert pair.replica_client.llen(items_key) == 10
            pair.pause_replica()
            try:
                with pytest.raises(distqueue.OutcomeUnknownError, match="replica"):
                    await asyncio.wait_for(q.put("held back"), 30)
            finally:
                pair.resume_replica()
            # it ran on the primary once, however often it was retried while waiting
            assert pair.primary_client.llen(items_key) == 11

    try:
        asyncio.run(body())
    finally:
        pair.close()


def test_waiting_gets_survive_a_server_restart(tmp_path: Path) -> None:
    from aio_support import server_blocked, until, until_waiting
    from servers import RedisServer, require_binary

    server = RedisServer(require_binary("redis-server"), tmp_path)

    async def body() -> None:
        name = fresh_name()
        async with aio.Queue(url=server.url, name=name) as q:
            getters = [asyncio.ensure_future(q.get(timeout=60)) for _ in range(10)]
            await until_waiting(q, 10)
            server.kill()
            server.start()  # an empty server: no scripts, no keys
            await until(lambda: server_blocked(q) >= 1, "the shared wait blocked again")
            producer: distqueue.Queue[int] = distqueue.Queue(url=server.url, name=name)
            producer.put_many(range(10))
            assert await asyncio.wait_for(asyncio.gather(*getters), 60) == list(range(10))
            producer.close()

    try:
        asyncio.run(body())
    finally:
        server.close()


def test_a_client_of_the_callers_own_keeps_its_connections_free_between_calls(
    redis_url: str,
) -> None:
    async def body() -> None:
        client = redis.asyncio.Redis.from_url(redis_url, max_connections=1)
        async with aio.Queue(client=client, name=fresh_name()) as q:
            await q.put("x")
            assert await q.get(timeout=0) == "x"
            # the queue holds none of the pool's one connection between its calls
            assert await client.ping()
            await q.put("y")
            assert await client.ping()
        await client.aclose()

    asyncio.run(body())


def test_calls_go_on_after_the_server_restarts_between_them(tmp_path: Path) -> None:
    from servers import RedisServer, require_binary

    server = RedisServer(require_binary("redis-server"), tmp_path)

    async def body() -> None:
        async with aio.Queue(url=server.url, name=fresh_name()) as q:
            await asyncio.gather(*(q.put(n) for n in range(5)))  # several connections open
            assert sorted(await q.get_many(10, timeout=0)) == list(range(5))
            server.kill()
            server.start()  # every connection the queue opened is gone
            await asyncio.gather(*(q.put(n) for n in range(5)))
            assert sorted(await q.get_many(10, timeout=0)) == list(range(5))
            await q.delete()

    try:
        asyncio.run(body())
    finally:
        server.close()


def test_calls_cancelled_at_any_point_leave_later_replies_in_step(redis_url: str) -> None:
    """A put or get cancelled before its reply came must not leave that reply for the next
    call on the same connection: every later call reads its own."""

    async def body() -> None:
        async with aio.Queue(url=redis_url, name=fresh_name()) as q:
            for turn in range(80):
                task = asyncio.ensure_future(q.put(f"maybe-{turn}"))
                for _ in range(turn % 4):  # cancel at different points of the round trip
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await q.put(f"sure-{turn}")
                taken = await q.get_many(1000, timeout=0)
                assert all(isinstance(item, str) for item in taken), taken
                assert taken[-1] == f"sure-{turn}"  # its own reply, nothing older
                assert set(taken) <= {f"maybe-{turn}", f"sure-{turn}"}
                getter = asyncio.ensure_future(q.get())
                for _ in range(turn % 3):
                    await asyncio.sleep(0)
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
                assert await q.size() == 0
            await q.delete()

    asyncio.run(body())


def test_on_a_cluster_wait_replicas_waits_for_the_shard_of_the_change(
    redis_cluster: Any, cluster_url: str
) -> None:
    import os
    import signal

    from cluster import ProcessNode
    from test_replicas import QUICK

    name = fresh_name()
    master = redis_cluster.master_of_key(f"dq:{{{name}}}:items")

    def replicates(node: Any) -> bool:
        with node.client() as client:
            role = client.execute_command("ROLE")
        return bool(role[0] == "slave" and int(role[2]) == master.port)

    replica = next(node for node in redis_cluster.nodes if node.running and replicates(node))
    if not isinstance(replica, ProcessNode) or replica.process is None:
        pytest.skip("needs the shard's replica as a local process, to pause it")
    pid = replica.process.pid

    async def body() -> None:
        async with aio.Queue(url=f"{cluster_url}?wait_replicas=1&{QUICK}", name=name) as q:
            await q.put("confirmed")
            assert await q.get_many(10, timeout=0) == ["confirmed"]
            os.kill(pid, signal.SIGSTOP)
            try:
                # the WAIT goes to the change's own master, whose one replica is paused
                with pytest.raises(distqueue.OutcomeUnknownError, match="replica"):
                    await asyncio.wait_for(q.put("held back"), 30)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert await q.get_many(10, timeout=0) == ["held back"]  # put once
            await q.delete()

    asyncio.run(body())


def test_on_a_cluster_a_script_call_is_one_round_trip_to_the_master_of_its_keys(
    redis_cluster: Any, cluster_url: str
) -> None:
    name = fresh_name()
    master = redis_cluster.master_of_key(f"dq:{{{name}}}:items")

    def calls(node: Any, command: str) -> int:
        with node.client() as client:
            stats = client.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    def getkeys() -> dict[int, int]:
        running = [node for node in redis_cluster.nodes if node.running]
        return {node.port: calls(node, "command|getkeys") for node in running}

    async def body() -> None:
        async with aio.Queue(url=cluster_url, name=name) as q:
            await q.put("warm-up")  # the functions loaded, the slots read
            # redis-py's cluster client would ask a server for the keys of each FCALL first
            before = getkeys()
            scripts_before = calls(master, "fcall")
            for n in range(20):
                await q.put(n)
            assert await q.get_many(30, timeout=0) == ["warm-up", *range(20)]
            assert getkeys() == before  # no server was asked for the keys
            assert calls(master, "fcall") - scripts_before == 21  # 20 puts and the take
            await q.delete()

    asyncio.run(body())


def test_scripts_are_given_to_a_server_that_lost_them(redis_url: str, raw: redis.Redis) -> None:
    """FUNCTION FLUSH (as a restart without persistence would) and, for a user who may not
    run functions, SCRIPT FLUSH: the next call gives the server the scripts again, and no
    item is lost or doubled."""
    user = f"nofcall-{uuid.uuid4().hex[:8]}"
    raw.acl_setuser(
        user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-fcall"]
    )
    name = fresh_name()

    async def body(url: str, flush: Any) -> list[Any]:
        async with aio.Queue(url=url, name=name) as q:
            await q.put(1)
            flush()
            await q.put(2)
            flush()
            got = [await q.get()]
            flush()
            got.extend(await q.get_many(5))
            flush()
            await q.put_many([3, 4])
            got.extend(await q.get_many(5))
            return got

    try:
        assert asyncio.run(body(redis_url, raw.function_flush)) == [1, 2, 3, 4]
        assert raw.function_list()  # loaded again
        evals = int(raw.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))
        no_functions = redis_url.replace("redis://", f"redis://{user}:secret@")
        assert asyncio.run(body(no_functions, raw.script_flush)) == [1, 2, 3, 4]
        assert int(raw.info("commandstats")["cmdstat_eval"]["calls"]) >= evals + 4
        assert raw.exists(f"dq:{{{name}}}:items") == 0
    finally:
        raw.acl_deluser(user)


def test_garbage_in_the_room_token_list_ends_waiting_puts_with_a_wrong_type_error(
    redis_url: str, raw: redis.Redis
) -> None:
    """Puts waiting for room share one wait on the server: the error it meets (another
    program's string where the queue keeps a token list) reaches every one of them, naming
    the key, as it would a put waiting by itself."""

    async def body() -> None:
        async with aio.Queue(1, url=redis_url, name=fresh_name()) as q:
            await q.put(0)
            raw.set(f"dq:{{{q.name}}}:notfull", "not a list")
            putters = [asyncio.ensure_future(q.put(i, timeout=30)) for i in range(1, 4)]
            results = await asyncio.wait_for(asyncio.gather(*putters, return_exceptions=True), 60)
            for result in results:
                assert isinstance(result, distqueue.WrongTypeError), result
                assert f"dq:{{{q.name}}}:notfull" in str(result)
            raw.delete(f"dq:{{{q.name}}}:notfull")
            assert await q.get() == 0
            assert q.qsize() == 0
            await q.delete()

    asyncio.run(body())
