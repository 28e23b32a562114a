"""Redis in practice through redis-py, and how distqueue's queues are made of it.

    python examples/redis_basics.py                                  # no server: fakeredis
    python examples/redis_basics.py --url redis://localhost:6379/0   # a real Redis

What it teaches: Redis is a server of data structures, each under a key: strings (also
counters), hashes, lists, sets and sorted sets. Each command is atomic; a pipeline sends many
commands in one round trip; ``MULTI``/``EXEC`` runs them as one transaction, and ``WATCH`` makes
it optimistic (it fails if someone changed a watched key meanwhile). Pub/sub delivers messages
to whoever is subscribed at that moment. Last, a ``distqueue.Queue`` and a
``distqueue.PriorityQueue`` are put to work and their keys listed: a FIFO queue is a list, a
priority queue a sorted set, next to a few small keys of bookkeeping.

Without ``--url`` it runs on fakeredis, an in-process imitation of Redis
(``pip install 'fakeredis[lua]'``). The example's keys start with ``lesson:``; it deletes them
before and after it runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import redis

import distqueue

KEYS = [
    "lesson:greeting",
    "lesson:visits",
    "lesson:lock",
    "lesson:user:42",
    "lesson:jobs",
    "lesson:langs:ada",
    "lesson:langs:bob",
    "lesson:scores",
    "lesson:alice",
    "lesson:bob",
]
QUEUES = ["lesson-jobs", "lesson-priority"]


Connect = Callable[..., redis.Redis]


def connector(url: str | None) -> Connect:
    """A function that opens a new client on the same server (fakeredis without a URL).

    ``connect(decode=False)`` gives a client that returns bytes, as distqueue needs.
    """
    if url is not None:
        return lambda decode=True: redis.Redis.from_url(url, decode_responses=decode)
    import fakeredis

    server = fakeredis.FakeServer()
    return lambda decode=True: fakeredis.FakeRedis(server=server, decode_responses=decode)


def show(command: str, reply: Any) -> None:
    print(f"  {command:<44} -> {reply!r}")


def strings(r: redis.Redis) -> None:
    print("strings: a value under a key, and counters")
    show("SET lesson:greeting hello", r.set("lesson:greeting", "hello"))
    show("GET lesson:greeting", r.get("lesson:greeting"))
    show("SET lesson:lock me NX EX 10 (only if absent)", r.set("lesson:lock", "me", nx=True, ex=10))
    show("SET lesson:lock you NX EX 10", r.set("lesson:lock", "you", nx=True, ex=10))
    show("TTL lesson:lock (seconds left)", r.ttl("lesson:lock"))
    show("INCR lesson:visits", r.incr("lesson:visits"))
    show("INCRBY lesson:visits 10", r.incrby("lesson:visits", 10))
    show("MGET lesson:greeting lesson:visits", r.mget(["lesson:greeting", "lesson:visits"]))


def hashes(r: redis.Redis) -> None:
    print("hashes: fields of one record")
    added = r.hset("lesson:user:42", mapping={"name": "Ada", "born": "1815"})
    show("HSET lesson:user:42 name Ada born 1815", added)
    show("HGET lesson:user:42 name", r.hget("lesson:user:42", "name"))
    show("HINCRBY lesson:user:42 logins 1", r.hincrby("lesson:user:42", "logins", 1))
    show("HGETALL lesson:user:42", r.hgetall("lesson:user:42"))


def lists(r: redis.Redis) -> None:
    print("lists: a queue (push at one end, pop at the other) or a stack (same end)")
    show("RPUSH lesson:jobs a b c", r.rpush("lesson:jobs", "a", "b", "c"))
    show("LPUSH lesson:jobs z", r.lpush("lesson:jobs", "z"))
    show("LRANGE lesson:jobs 0 -1", r.lrange("lesson:jobs", 0, -1))
    show("LPOP lesson:jobs (first in line)", r.lpop("lesson:jobs"))
    show("RPOP lesson:jobs (last pushed)", r.rpop("lesson:jobs"))
    show("BLPOP lesson:jobs 1 (waits up to 1 s)", r.blpop(["lesson:jobs"], timeout=1))
    show("LLEN lesson:jobs", r.llen("lesson:jobs"))


def sets(r: redis.Redis) -> None:
    print("sets: members without order or repeats")
    show("SADD lesson:langs:ada python lua c", r.sadd("lesson:langs:ada", "python", "lua", "c"))
    show("SADD lesson:langs:bob python go python", r.sadd("lesson:langs:bob", "python", "go"))
    show("SISMEMBER lesson:langs:ada lua", r.sismember("lesson:langs:ada", "lua"))
    show("SINTER ada bob (both)", sorted(r.sinter(["lesson:langs:ada", "lesson:langs:bob"])))
    show("SUNION ada bob (either)", sorted(r.sunion(["lesson:langs:ada", "lesson:langs:bob"])))


def sorted_sets(r: redis.Redis) -> None:
    print("sorted sets: members ordered by a score")
    show(
        "ZADD lesson:scores 30 ada 10 bob 20 eve",
        r.zadd("lesson:scores", {"ada": 30, "bob": 10, "eve": 20}),
    )
    show("ZRANGE lesson:scores 0 -1 WITHSCORES", r.zrange("lesson:scores", 0, -1, withscores=True))
    show("ZINCRBY lesson:scores 25 bob", r.zincrby("lesson:scores", 25, "bob"))
    show("ZRANGEBYSCORE lesson:scores 15 32", r.zrangebyscore("lesson:scores", 15, 32))
    show("ZPOPMIN lesson:scores (the lowest)", r.zpopmin("lesson:scores"))


def pipelines(r: redis.Redis, connect: Connect) -> None:
    print("pipelines and transactions")
    pipe = r.pipeline(transaction=False)  # commands are buffered, sent together
    pipe.incr("lesson:visits")
    pipe.get("lesson:greeting")
    pipe.llen("lesson:jobs")
    show("pipeline: INCR, GET, LLEN in one round trip", pipe.execute())

    with r.pipeline(transaction=True) as tx:  # MULTI ... EXEC: all at once, nothing between
        tx.set("lesson:alice", 100)
        tx.set("lesson:bob", 0)
        show("MULTI SET alice 100 SET bob 0 EXEC", tx.execute())

    # WATCH: read, decide, write only if nobody changed what was read. The first attempt is
    # spoiled by another client on purpose, so the transaction fails and is tried again.
    other = connect()
    attempts = 0
    while True:
        attempts += 1
        with r.pipeline() as tx:
            try:
                tx.watch("lesson:alice", "lesson:bob")
                alice = int(tx.get("lesson:alice") or 0)
                bob = int(tx.get("lesson:bob") or 0)
                if attempts == 1:
                    other.incrby("lesson:alice", 5)  # a concurrent deposit
                tx.multi()
                tx.set("lesson:alice", alice - 30)
                tx.set("lesson:bob", bob + 30)
                tx.execute()
                break
            except redis.WatchError:
                print("  WATCH: alice changed after we read her balance; EXEC refused, retrying")
    other.close()
    balances = r.mget(["lesson:alice", "lesson:bob"])
    show(f"transfer 30 alice->bob, {attempts} attempts", balances)


def pubsub(r: redis.Redis) -> None:
    print("pub/sub: messages to whoever listens now (nothing is stored)")
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("lesson:news")
    listener.get_message(timeout=1)  # the confirmation of the subscription
    show("PUBLISH lesson:news hello (subscribers)", r.publish("lesson:news", "hello"))
    show("PUBLISH lesson:news bye", r.publish("lesson:news", "bye"))
    received = []
    for _ in range(2):
        message = listener.get_message(timeout=1)
        if message is not None:
            received.append(message["data"])
    show("the subscriber received", received)
    listener.close()


def distqueue_keys(connect: Connect, raw: redis.Redis) -> None:
    print("distqueue on Redis: a queue is a list, a priority queue a sorted set")
    jobs: distqueue.Queue[Any] = distqueue.Queue(name="lesson-jobs", client=raw)
    urgent: distqueue.PriorityQueue[Any] = distqueue.PriorityQueue(
        name="lesson-priority", client=raw
    )
    jobs.put({"resize": "cat.jpg"})
    jobs.put({"resize": "dog.jpg"})
    urgent.put((2, "write report"))
    urgent.put((1, "fix outage"))
    r = connect()
    for name in QUEUES:
        replies = 0
        for key in sorted(r.scan_iter(match=f"dq:{{{name}}}:*")):
            if key.startswith(f"dq:{{{name}}}:r:"):
                replies += 1  # the last change's reply, kept for a retry until the next call
                continue
            kind = r.type(key)
            if kind == "list":  # items enter at the left: the oldest is on the right
                content: Any = r.lrange(key, 0, -1)
            elif kind == "zset":
                content = f"{r.zcard(key)} members, each its item in an order-preserving encoding"
            elif kind == "hash":
                content = r.hgetall(key)
            else:
                content = r.get(key)
            print(f"  {key:<26} {kind:<5} {content!s}")
        reply_key = f"dq:{{{name}}}:r:ID"
        print(f"  {reply_key:<26} string {replies} key: the last put's reply, kept for a retry")
    payload = r.lindex("dq:{lesson-jobs}:items", -1)
    show("the oldest item is JSON", json.loads(payload) if payload else None)
    show("jobs.get() (first in, first out)", jobs.get())
    show("urgent.get() (the smallest)", urgent.get())
    for q in (jobs, urgent):
        q.delete()
        q.close()
    raw.close()
    r.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="redis://HOST:6379/0 (default: fakeredis, in this process)")
    args = parser.parse_args()
    connect = connector(args.url)
    r = connect()
    r.delete(*KEYS)
    print(f"Redis on {args.url or 'fakeredis'}")
    strings(r)
    hashes(r)
    lists(r)
    sets(r)
    sorted_sets(r)
    pipelines(r, connect)
    pubsub(r)
    distqueue_keys(connect, connect(decode=False))  # distqueue reads replies as bytes
    r.delete(*KEYS)
    r.close()


if __name__ == "__main__":
    main()
