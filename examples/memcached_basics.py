"""memcached in practice: its classic commands through pymemcache, then through distqueue.Cache.

    python examples/memcached_basics.py                              # no server: stand-ins
    python examples/memcached_basics.py --memcached localhost:11211  # a real memcached

What it teaches: memcached is a shared dictionary of bytes on the network, with an expiry time
per key and nothing else: no lists, no queries, no persistence. Its commands:

- ``set``/``get``; ``add`` (only if absent) and ``replace`` (only if present);
- ``append``/``prepend`` (bytes added to a value that exists);
- ``incr``/``decr`` (a counter kept as decimal digits; ``decr`` stops at 0);
- ``gets``/``cas`` (compare-and-set: ``gets`` returns a token, and ``cas`` stores only if the
  value has not changed since: optimistic locking without a lock);
- ``set_many``/``get_many`` (one round trip for many keys), ``delete``, and expiry in seconds.

Part 1 speaks to memcached with pymemcache, where values are bytes (a small "serde" object
turns ints into digits and back). Part 2 does the same with ``distqueue.Cache``, which stores
any value its serializer can carry, namespaces and hashes keys, and treats a server that is
down as a miss.

With no server, part 1 runs on pymemcache's in-process ``MockMemcacheClient`` (which has no
``gets``/``cas``: give ``--memcached`` to see them) and part 2 on ``memory://``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from pymemcache.client.base import Client
from pymemcache.test.utils import MockMemcacheClient

import distqueue

INT_FLAG = 1  # memcached keeps 32 bits of flags beside each value: ours say "an int"


class IntSerde:
    """pymemcache's serializer hook: bytes stay bytes, ints travel as decimal digits."""

    def serialize(self, key: str, value: Any) -> tuple[bytes, int]:
        if isinstance(value, int):
            return str(value).encode("ascii"), INT_FLAG
        if isinstance(value, bytes):
            return value, 0
        raise TypeError(f"this example stores bytes and ints, not {type(value).__name__}")

    def deserialize(self, key: str, value: bytes, flags: int) -> Any:
        return int(value) if flags == INT_FLAG else value


def show(label: str, text: str) -> None:
    print(f"  {label:<15} {text}")


def with_pymemcache(client: Any, real: bool) -> None:
    # Every write asks for the server's answer (noreply=False): without it pymemcache does
    # not wait for one, and every write "succeeds".
    client.delete_many(["greeting", "fresh", "visits", "a", "b", "c", "short"], noreply=False)

    stored = client.set("greeting", b"hello", noreply=False)
    show("set/get", f"set greeting=b'hello' -> {stored}; get -> {client.get('greeting')!r}")

    taken = client.add("greeting", b"hi", noreply=False)
    fresh = client.add("fresh", b"new", noreply=False)
    show("add", f"greeting (taken) -> {taken}; fresh (absent) -> {fresh}")
    replaced = client.replace("greeting", b"hi", noreply=False)
    nobody = client.replace("nobody", b"x", noreply=False)
    show("replace", f"greeting (present) -> {replaced}; nobody (absent) -> {nobody}")

    client.append("greeting", b" there", noreply=False)
    client.prepend("greeting", b"oh, ", noreply=False)
    show("append/prepend", f"greeting -> {client.get('greeting')!r}")

    client.set("visits", 10, noreply=False)
    up = client.incr("visits", 5)
    down = client.decr("visits", 3)
    missing = client.incr("no-counter", 1)
    show("incr/decr", f"visits 10, +5 -> {up}, -3 -> {down}; incr of a missing key -> {missing}")

    if real:
        value, token = client.gets("greeting")
        first = client.cas("greeting", b"changed once", token)
        second = client.cas("greeting", b"changed twice", token)
        show("gets/cas", f"gets -> {value!r}; cas with its token -> {first}; again -> {second}")
        now = client.get("greeting")
        show("", f"(the first cas changed the value, so its token is stale: {now!r})")
    else:
        show("gets/cas", "not in MockMemcacheClient: run with --memcached HOST:PORT")

    failed = client.set_many({"a": b"1", "b": b"2", "c": b"3"}, noreply=False)
    found = client.get_many(["a", "b", "c", "d"])
    show("set_many", f"3 keys, failed: {failed}")
    show("get_many", f"a b c d -> {dict(sorted(found.items()))}")

    gone = client.delete("fresh", noreply=False)
    again = client.delete("fresh", noreply=False)
    show("delete", f"fresh -> {gone}; again -> {again}; get -> {client.get('fresh')!r}")

    client.set("short", b"soon gone", expire=1, noreply=False)
    show("expiry", f"set short with expire=1 -> get {client.get('short')!r}")


def with_cache(cache: distqueue.Cache) -> None:
    user = {"name": "Ada", "langs": ["python", "lua"]}
    stored = cache.set("user", user)
    show("set/get", f"set user={user} -> {stored}; get -> {cache.get('user')}")

    taken = cache.add("user", {"name": "Bob"})
    fresh = cache.add("fresh", "new")
    show("add", f"user (taken) -> {taken}; fresh (absent) -> {fresh}")
    replaced = cache.replace("fresh", "renewed")
    nobody = cache.replace("nobody", "x")
    show("replace", f"fresh (present) -> {replaced}; nobody (absent) -> {nobody}")

    cache.set("log", b"b")
    appended = cache.append("log", b"c")
    prepended = cache.prepend("log", b"a")
    missing = cache.append("no-log", b"x")
    show(
        "append/prepend",
        f"log b'b' +c -> {appended}, a+ -> {prepended}: {cache.get('log')!r}; "
        f"append to a missing key -> {missing}",
    )

    up = cache.incr("visits", 5)  # a missing counter starts at 0
    down = cache.decr("visits", 8)
    show("incr/decr", f"visits (new) +5 -> {up}, -8 -> {down} (stops at 0)")

    _, token = cache.gets("user")
    if token is None:  # no value under the key (or its server failed): nothing to compare
        raise SystemExit("FAILED: gets found no value under 'user'")
    first = cache.cas("user", {**user, "langs": ["python"]}, token)
    second = cache.cas("user", {"name": "Eve"}, token)
    show("gets/cas", f"gets user -> a token; cas with it -> {first}; again -> {second}")
    show("", f"(the token is stale after the first cas: user -> {cache.get('user')})")

    not_stored = cache.set_many({"a": 1, "b": [2], "c": "three"})
    found = cache.get_many(["a", "b", "c", "d"])
    show("set_many", f"3 keys, not stored: {not_stored}")
    show("get_many", f"a b c d -> {dict(sorted(found.items()))}")

    gone = cache.delete("fresh")
    again = cache.delete("fresh")
    show("delete", f"fresh -> {gone}; again -> {again}; get -> {cache.get('fresh')!r}")

    cache.set("short", "soon gone", ttl=1)
    show("expiry", f"set short with ttl=1 -> get {cache.get('short')!r}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--memcached", metavar="HOST:PORT", help="a memcached server")
    args = parser.parse_args()

    real = args.memcached is not None
    if real:
        host, _, port = args.memcached.rpartition(":")
        client: Any = Client((host, int(port)), serde=IntSerde(), connect_timeout=2, timeout=2)
        print(f"part 1: pymemcache on {args.memcached}")
        url = f"memcached://{args.memcached}"
    else:
        client = MockMemcacheClient(serde=IntSerde())
        print("part 1: pymemcache's MockMemcacheClient, in this process")
        url = "memory://"
    with_pymemcache(client, real)

    # A namespace of this run's own: its keys cannot meet those of an earlier run.
    namespace = f"lesson-{uuid.uuid4().hex[:8]}"
    cache = distqueue.Cache(url, namespace=namespace, default_ttl=60)
    print(f"part 2: distqueue.Cache on {url}")
    with_cache(cache)

    time.sleep(2.1)  # memcached counts time in whole seconds: 1 s can take almost 2
    print(
        f"after 2 s: pymemcache get short -> {client.get('short')!r}; "
        f"Cache get short -> {cache.get('short')!r}"
    )
    stats = cache.stats
    print(
        f"Cache.stats: hits {stats.hits}, misses {stats.misses}, "
        f"server errors {stats.server_errors}"
    )
    client.close()
    cache.close()


if __name__ == "__main__":
    main()
