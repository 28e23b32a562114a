"""What only memcached has: several servers, a server killed mid-test, the item size limit,
chunks, and memcached's key rules.

The tests look at the servers with a raw pymemcache client (``lru_crawler metadump`` lists
the keys a server holds) to check where and how the cache stored things.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient
from servers import MemcachedProcess, require_binary

import distqueue
from distqueue.cache import Cache, ResultMissing, ResultStore, ResultTimeout, ValueTooLargeError

MB = 1024 * 1024
GUARD = 60.0
MISSING = object()


def raw_client(server: MemcachedProcess) -> Client:
    return Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5, default_noreply=False)


def keys_on(server: MemcachedProcess, namespace: str) -> set[str]:
    """The keys of ``namespace`` that ``server`` holds (``lru_crawler metadump all``; read with
    a plain socket: pymemcache's raw_command keeps only the last packet of a long reply)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"lru_crawler metadump all\r\n")
        dump = b""
        while not dump.endswith(b"END\r\n"):
            data = sock.recv(65536)
            assert data, "memcached closed the connection during metadump"
            dump += data
    keys = {unquote(line.split(" ", 1)[0][4:]) for line in dump.decode().splitlines()}
    return {key for key in keys if key.startswith(namespace + ":")}


def url_of(*servers: MemcachedProcess) -> str:
    return "memcached://" + ",".join(server.address for server in servers)


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def pair_cache(memcached_pair: tuple[Any, Any], namespace: str) -> Iterator[Cache]:
    cache = Cache(url_of(*memcached_pair), namespace=namespace)
    yield cache
    cache.close()


# -- several servers -----------------------------------------------------------------------------


def test_keys_are_spread_over_both_servers_where_hash_client_puts_them(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    assert pair_cache.set_many({f"user:{n}": n for n in range(200)}) == []
    first, second = (keys_on(server, namespace) for server in memcached_pair)
    assert len(first) + len(second) == 200
    assert first and second, "every key went to one server"
    hashing = HashClient([("127.0.0.1", server.port) for server in memcached_pair])
    for server, keys in zip(memcached_pair, (first, second), strict=True):
        for key in keys:
            assert hashing.hasher.get_node(key) == server.address, key


def test_short_printable_keys_are_stored_readably_and_odd_ones_hashed(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    pair_cache.set("user:42", 1)
    pair_cache.set("with space", 2)
    pair_cache.set("x" * 1000, 3)
    stored = keys_on(memcached_pair[0], namespace) | keys_on(memcached_pair[1], namespace)
    assert f"{namespace}:v:user:42" in stored
    hashed = sorted(key for key in stored if key.startswith(f"{namespace}:v#"))
    assert len(hashed) == 2, stored
    assert all(len(key.encode()) <= 250 and key.isprintable() and " " not in key for key in stored)


def test_a_server_killed_mid_test_is_a_miss_for_its_keys_only(
    own_memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    alive, doomed = own_memcached_pair
    cache = Cache(url_of(alive, doomed), namespace=namespace, dead_retry=0.2, timeout=2)
    values = {f"k{n}": n for n in range(100)}
    assert cache.set_many(values) == []
    on_doomed = {key.rsplit(":", 1)[1] for key in keys_on(doomed, namespace)}
    on_alive = set(values) - on_doomed
    assert on_doomed and on_alive

    doomed.kill()
    doomed_key, alive_key = sorted(on_doomed)[0], sorted(on_alive)[0]
    assert cache.get_many(values) == {key: values[key] for key in on_alive}
    assert cache.get(doomed_key, MISSING) is MISSING
    assert cache.get(alive_key) == values[alive_key]
    assert cache.set(doomed_key, "new") is False
    assert sorted(cache.set_many({doomed_key: 1, alive_key: 2})) == [doomed_key]
    assert cache.add(doomed_key, 1) is False
    assert cache.incr(doomed_key) is None
    assert cache.touch(doomed_key) is False
    assert cache.delete(doomed_key) is False
    assert cache.stats.server_errors >= 8, cache.stats

    calls = []

    @cache.cached(name="outage")
    def compute(key: str) -> str:
        calls.append(key)
        return f"value of {key}"

    for _ in range(2):
        assert [compute(key) for key in values] == [f"value of {key}" for key in values]
    uncached = cache.stats.uncached_calls
    assert uncached > 0, "no call needed the dead server"
    # A call whose keys live on the live server ran once and was then a hit; one that needs
    # the dead server ran the function both times, without raising.
    assert len(calls) == len(values) + uncached // 2

    doomed.start()  # same port, empty
    time.sleep(0.5)  # past dead_retry
    assert cache.set(doomed_key, "back") is True
    assert cache.get(doomed_key) == "back"
    cache.close()


def test_results_on_a_killed_server_are_an_error_not_a_miss(
    own_memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    alive, doomed = own_memcached_pair
    store = ResultStore(url_of(alive, doomed), namespace=namespace, ttl=600, dead_retry=0.2)
    ids = [f"task-{n}" for n in range(40)]
    for task_id in ids:
        store.mark_pending(task_id)
    # result keys are {ns}:r:{id} (the id as a hash tag)
    on_doomed = {key.rsplit(":", 1)[1].strip("{}") for key in keys_on(doomed, namespace)}
    on_alive = set(ids) - on_doomed
    assert on_doomed and on_alive
    doomed.kill()
    task = sorted(on_doomed)[0]
    with pytest.raises(distqueue.BackendConnectionError):
        store.set_result(task, 1)
    with pytest.raises(distqueue.BackendConnectionError):
        store.wait(task, timeout=1)
    with pytest.raises(distqueue.BackendConnectionError):
        store.mark_pending(task)
    other = sorted(on_alive)[0]
    store.set_result(other, "fine")
    assert store.wait(other, timeout=5).value == "fine"
    doomed.start()
    time.sleep(0.5)
    with pytest.raises(ResultMissing):  # the restarted server lost the pending marker
        store.wait(task, timeout=1)
    store.close()


def test_a_server_that_accepts_but_never_answers_is_a_miss_after_the_timeout(
    namespace: str,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        cache = Cache(f"memcached://127.0.0.1:{port}", namespace=namespace, timeout=0.3)
        assert cache.get("k", MISSING) is MISSING
        assert cache.set("k", 1) is False
        assert cache.stats.server_errors == 2
        cache.close()


def test_no_server_at_all_still_runs_cached_functions(namespace: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    cache = Cache(f"memcached://127.0.0.1:{port}", namespace=namespace)

    @cache.cached(name="test.f")
    def f(x: int) -> int:
        return x + 1

    assert [f(1), f(1), f(2)] == [2, 2, 3]
    assert cache.stats.uncached_calls == 3
    cache.close()


# -- item size limit and chunks ------------------------------------------------------------------


def test_the_item_size_limit_is_read_from_the_server(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    big_server = MemcachedProcess(require_binary("memcached"), item_size_max="2m")
    try:
        value = os.urandom(MB + MB // 2)
        with Cache(url_of(big_server), namespace=namespace) as cache:
            cache.set("k", value)
            assert cache.get("k") == value
        assert keys_on(big_server, namespace) == {f"{namespace}:v:k"}, "chunked needlessly"
        with Cache(url_of(memcached_pair[0]), namespace=namespace) as cache:
            cache.set("k", value)
            assert cache.get("k") == value
        stored = keys_on(memcached_pair[0], namespace)
        assert len([key for key in stored if f"{namespace}:c:" in key]) == 2, stored
    finally:
        big_server.kill()


def chunk_keys(memcached_pair: tuple[Any, Any], namespace: str) -> dict[str, MemcachedProcess]:
    found = {}
    for server in memcached_pair:
        for key in keys_on(server, namespace):
            if key.startswith(f"{namespace}:c:"):
                found[key] = server
    return found


def test_a_missing_chunk_is_a_miss_never_wrong_data(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    value = os.urandom(3 * MB)
    pair_cache.set("k", value)
    chunks = chunk_keys(memcached_pair, namespace)
    assert len(chunks) == 4
    key, server = sorted(chunks.items())[1]
    raw_client(server).delete(key.encode())
    assert pair_cache.get("k", MISSING) is MISSING
    assert pair_cache.get_many(["k"]) == {}
    assert pair_cache.stats.corrupt_values == 2
    assert pair_cache.stats.misses == 2


def test_a_corrupt_chunk_is_a_miss_never_wrong_data(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    # Uncompressed, so that nothing but the chunks' checksum can notice a changed byte.
    pair_cache = Cache(url_of(*memcached_pair), namespace=namespace, compress_min_size=None)
    value = os.urandom(2 * MB)
    pair_cache.set("k", value)
    key, server = sorted(chunk_keys(memcached_pair, namespace).items())[-1]
    client = raw_client(server)
    stored = client.get(key.encode())
    # One base64 character in the middle changed to another: the payload still decodes, to
    # other bytes. Only the checksum can tell.
    middle = len(stored) // 2
    replacement = b"B" if stored[middle : middle + 1] == b"A" else b"A"
    client.set(key.encode(), stored[:middle] + replacement + stored[middle + 1 :])
    assert pair_cache.get("k", MISSING) is MISSING
    assert pair_cache.stats.corrupt_values == 1
    pair_cache.close()


def manifest(pieces: int, size: int, version: bytes | None = None) -> bytes:
    """A chunk manifest as frames.py documents it: "#", version, chunk count, body size,
    checksum."""
    checksum = hashlib.blake2b(b"", digest_size=16).digest()
    return b"#" + struct.pack(">16sIQ16s", version or os.urandom(16), pieces, size, checksum)


def gets_on(servers: tuple[Any, ...]) -> int:
    """Keys the servers were asked for so far (``cmd_get`` counts keys, not requests)."""
    return sum(raw_client(server).stats()[b"cmd_get"] for server in servers)


@pytest.mark.parametrize(
    ("pieces", "size"),
    [
        (2**32 - 1, 2**63),  # the most the fields can claim
        (2**32 - 1, 2**32 * 1000),
        (10**6, 10**6 * MB),
        (10**6, 10**6 * 600),
        (3, 10),  # fewer bytes than three chunks hold
        (2, 4 * 1024**3),  # more than two chunks can hold
        (1, MB),  # a value in one chunk is never chunked
        (2**16 + 1, (2**16 + 1) * 1000),  # more chunks than any value is cut into
        (40, 40 * 4 * MB),  # more bytes than the two servers hold (64 MB each)
    ],
)
def test_a_manifest_that_lies_is_a_miss_that_reads_no_chunk(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str, pieces: int, size: int
) -> None:
    key = f"{namespace}:v:k"
    for server in memcached_pair:  # wherever the key lives
        raw_client(server).set(key, manifest(pieces, size))
    before = gets_on(memcached_pair)
    assert pair_cache.get("k", MISSING) is MISSING
    assert pair_cache.get_many(["k"]) == {}
    assert pair_cache.touch("k") is False
    assert gets_on(memcached_pair) - before == 3  # the manifest, three times; no chunk
    stats = pair_cache.stats
    assert (stats.corrupt_values, stats.server_errors) == (3, 0), stats
    # the server is not marked down: the next call for a key on it works at once
    assert pair_cache.set("k", "fine") and pair_cache.get("k") == "fine"


def test_a_manifest_of_plausible_chunks_that_are_not_there_costs_one_request(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    pieces = 2**16  # the most a value may have, each of the smallest size
    key = f"{namespace}:v:k"
    for server in memcached_pair:  # wherever the key lives
        raw_client(server).set(key, manifest(pieces, pieces * 512))
    before = gets_on(memcached_pair)
    assert pair_cache.get("k", MISSING) is MISSING
    assert pair_cache.get_many(["k", "other"]) == {}
    # each read stops after the first batch of 64 chunks, not after 65536
    assert gets_on(memcached_pair) - before <= 2 * (1 + 64) + 1
    stats = pair_cache.stats
    assert (stats.corrupt_values, stats.server_errors) == (2, 0), stats
    assert pair_cache.set("k", "fine") and pair_cache.get("k") == "fine"


@pytest.mark.parametrize("change", ["size", "pieces", "checksum"])
def test_a_manifest_with_wrong_sizes_or_checksum_is_a_miss(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str, change: str
) -> None:
    pair_cache.set("k", os.urandom(3 * MB))
    key = f"{namespace}:v:k".encode()
    (client,) = [c for c in map(raw_client, memcached_pair) if c.get(key) is not None]
    version, pieces, size, checksum = struct.unpack(">16sIQ16s", client.get(key)[1:])
    if change == "size":
        size += 1
    elif change == "pieces":
        pieces -= 1
    else:
        checksum = bytes(16)
    client.set(key, b"#" + struct.pack(">16sIQ16s", version, pieces, size, checksum))
    assert pair_cache.get("k", MISSING) is MISSING
    stats = pair_cache.stats
    assert (stats.corrupt_values, stats.server_errors) == (1, 0), stats
    assert pair_cache.set("k", "fine") and pair_cache.get("k") == "fine"


# -- no chunk outlives its value -------------------------------------------------------------------


def test_an_add_onto_a_taken_key_leaves_no_chunk(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    pair_cache.set("small", "taken")
    assert pair_cache.add("small", os.urandom(3 * MB)) is False
    assert chunk_keys(memcached_pair, namespace) == {}
    large = os.urandom(3 * MB)
    pair_cache.set("large", large)
    first = set(chunk_keys(memcached_pair, namespace))
    assert len(first) == 4
    assert pair_cache.add("large", os.urandom(3 * MB)) is False
    assert set(chunk_keys(memcached_pair, namespace)) == first
    assert pair_cache.get("large") == large


def test_a_large_value_written_over_a_large_one_leaves_only_its_own_chunks(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    pair_cache.set("k", os.urandom(3 * MB))
    pair_cache.set("k", os.urandom(5 * MB // 2))
    newest = os.urandom(2 * MB)
    pair_cache.set("k", newest)
    assert len(chunk_keys(memcached_pair, namespace)) == 3
    assert pair_cache.set_many({"k": os.urandom(3 * MB), "j": os.urandom(2 * MB)}) == []
    assert len(chunk_keys(memcached_pair, namespace)) == 4 + 3
    assert pair_cache.set_many({"k": newest}) == []
    assert len(chunk_keys(memcached_pair, namespace)) == 3 + 3
    assert pair_cache.get("k") == newest


def test_deleting_a_large_value_deletes_its_chunks(
    memcached_pair: tuple[Any, Any], pair_cache: Cache, namespace: str
) -> None:
    pair_cache.set("k", os.urandom(3 * MB))
    assert pair_cache.delete("k") is True
    assert keys_on(memcached_pair[0], namespace) | keys_on(memcached_pair[1], namespace) == set()

    @pair_cache.cached(name="test.large")
    def large(n: int) -> bytes:
        return os.urandom(n * MB)

    large(2)
    assert chunk_keys(memcached_pair, namespace)
    assert large.invalidate(2) is True
    assert chunk_keys(memcached_pair, namespace) == {}


def test_forgetting_a_large_result_deletes_its_chunks(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    with ResultStore(url_of(*memcached_pair), namespace=namespace) as store:
        for task_id in ("a", "b"):
            store.mark_pending(task_id)
            store.set_result(task_id, os.urandom(2 * MB))
        store.set_result("a", os.urandom(3 * MB))  # a second write replaces the first's chunks
        assert len(chunk_keys(memcached_pair, namespace)) == 4 + 3
        store.forget("a")
        assert len(chunk_keys(memcached_pair, namespace)) == 3
        store.forget_many(["b"])
        assert chunk_keys(memcached_pair, namespace) == {}


def test_waiting_for_a_result_polls_with_a_back_off_not_hot(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    store = ResultStore(url_of(*memcached_pair), namespace=namespace)
    store.mark_pending("t")

    def gets() -> int:
        return sum(raw_client(server).stats()[b"cmd_get"] for server in memcached_pair)

    before = gets()
    with pytest.raises(ResultTimeout):
        store.wait("t", timeout=1.0)
    # With the back-off capped at 50 ms, one second is at most about 30 reads; a hot loop
    # would make thousands.
    assert gets() - before <= 40
    store.close()


def test_a_result_with_a_missing_chunk_is_missing(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    store = ResultStore(url_of(*memcached_pair), namespace=namespace)
    store.mark_pending("t")
    store.set_result("t", os.urandom(2 * MB))
    key, server = next(iter(chunk_keys(memcached_pair, namespace).items()))
    raw_client(server).delete(key.encode())
    with pytest.raises(ResultMissing, match="incomplete"):
        store.wait("t", timeout=5)
    store.close()


def test_concurrent_overwrites_of_a_large_value_never_mix(pair_cache: Cache) -> None:
    versions = [bytes([n]) * (2 * MB) for n in range(4)]
    stop = threading.Event()
    seen: list[Any] = []

    def write(value: bytes) -> None:
        while not stop.is_set():
            pair_cache.set("k", value)

    def read() -> None:
        while not stop.is_set():
            got = pair_cache.get("k", MISSING)
            if got is not MISSING:
                seen.append(got[:1] * len(got) == got and got in versions)

    threads = [threading.Thread(target=write, args=(value,)) for value in versions]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(GUARD)
    assert seen, "no read found a value"
    assert all(seen), f"{seen.count(False)} reads returned a mix of two writes"


def test_with_chunking_off_a_large_value_raises_before_anything_is_written(
    memcached_pair: tuple[Any, Any], namespace: str
) -> None:
    cache = Cache(url_of(*memcached_pair), namespace=namespace, chunking=False)
    cache.set("k", "old")
    with pytest.raises(ValueTooLargeError) as info:
        cache.set("k", os.urandom(2 * MB))
    assert isinstance(info.value, ValueError)
    assert info.value.size > info.value.limit
    with pytest.raises(ValueTooLargeError):
        cache.set_many({"a": 1, "k": os.urandom(2 * MB)})
    assert cache.get("k") == "old"
    assert cache.get("a", MISSING) is MISSING
    assert not chunk_keys(memcached_pair, namespace)
    compressible = "a" * (2 * MB)
    assert cache.set("k", compressible), "a value that fits once compressed is stored"
    assert cache.get("k") == compressible
    cache.close()


def test_touch_keeps_the_chunks_of_a_large_value(pair_cache: Cache) -> None:
    value = os.urandom(2 * MB)
    pair_cache.set("k", value, ttl=1)
    assert pair_cache.touch("k", ttl=600)
    time.sleep(2.5)
    assert pair_cache.get("k") == value


def test_all_connections_have_timeouts_and_wait_for_replies(pair_cache: Cache) -> None:
    pair_cache.set("k", 1)
    for server in pair_cache._backend._servers:  # type: ignore[attr-defined]
        for client in server._idle:
            assert client.connect_timeout and client.timeout
            assert client.default_noreply is False
