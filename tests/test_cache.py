"""The cache's contract, run against every backend: memory, a real Redis, two real memcached.

Every test uses a namespace of its own, so tests never see each other's values. Durations are
never asserted: tests that need time to pass (TTLs) sleep past it with a wide margin, and every
wait has a generous limit (``GUARD``) so that a bug fails a test instead of hanging it.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import distqueue
from distqueue.cache import Cache, ResultMissing, ResultStore, ResultTimeout, TaskFailed, cached

GUARD = 60.0
MB = 1024 * 1024

MakeCache = Callable[..., Cache]


@pytest.fixture
def make_cache(cache_url: str) -> Iterator[MakeCache]:
    """Build caches on the backend under test, each in a fresh namespace unless given one."""
    made: list[Cache] = []

    def make(**options: Any) -> Cache:
        options.setdefault("namespace", f"t-{uuid.uuid4().hex}")
        cache = Cache(cache_url, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


@pytest.fixture
def cache(make_cache: MakeCache) -> Cache:
    return make_cache()


MISSING = object()


# -- get, set, add, delete -----------------------------------------------------------------------


def test_get_of_a_missing_key_returns_the_default(cache: Cache) -> None:
    assert cache.get("nothing here") is None
    assert cache.get("nothing here", MISSING) is MISSING


def test_a_stored_none_is_told_apart_from_a_miss(cache: Cache) -> None:
    assert cache.set("k", None)
    assert cache.get("k", MISSING) is None
    assert cache.get("other", MISSING) is MISSING


VALUES = [
    0,
    1,
    2**63 - 1,
    2**63,
    -5,
    1.5,
    float("inf"),
    True,
    "",
    "text with spaces\nand lines \u00e9\u4e2d",
    b"",
    b"\x00\xff bytes",
    [1, [2, "x"]],
    (1, 2),
    {"a": 1, "b": [None]},
    {1: "int key"},
    {1, 2, 3},
    frozenset({"x"}),
    datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
    datetime.date(2024, 5, 1),
    decimal.Decimal("1.50"),
    uuid.UUID(int=7),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_supported_value_round_trips_with_its_type(cache: Cache, value: Any) -> None:
    assert cache.set("k", value)
    got = cache.get("k", MISSING)
    assert got == value and type(got) is type(value), f"stored {value!r}, got {got!r}"


def test_values_are_copies(cache: Cache) -> None:
    value = {"list": [1, 2]}
    cache.set("k", value)
    value["list"].append(3)
    got = cache.get("k")
    assert got == {"list": [1, 2]}
    got["list"].append(4)
    assert cache.get("k") == {"list": [1, 2]}


def test_set_overwrites(cache: Cache) -> None:
    cache.set("k", "first")
    cache.set("k", "second")
    assert cache.get("k") == "second"


def test_add_stores_only_when_the_key_holds_nothing(cache: Cache) -> None:
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"
    cache.set("n", None)
    assert cache.add("n", "x") is False, "a stored None is a value"


def test_delete_says_whether_there_was_a_value(cache: Cache) -> None:
    cache.set("k", 1)
    assert cache.delete("k") is True
    assert cache.get("k", MISSING) is MISSING
    assert cache.delete("k") is False


# -- replace, append, prepend, gets, cas ---------------------------------------------------------


def test_replace_stores_only_when_the_key_holds_a_value(cache: Cache) -> None:
    assert cache.replace("k", "first") is False
    assert cache.get("k", MISSING) is MISSING, "replace stored a value under a missing key"
    cache.set("k", "first")
    assert cache.replace("k", {"second": 2}) is True
    assert cache.get("k") == {"second": 2}
    cache.set("n", None)
    assert cache.replace("n", "x") is True, "a stored None is a value"


def test_replace_gives_the_value_its_ttl(cache: Cache) -> None:
    cache.set("k", "old", ttl=600)
    assert cache.replace("k", "new", ttl=1)
    time.sleep(2.5)
    assert cache.get("k", MISSING) is MISSING


def test_replace_of_a_large_value_by_a_large_value(cache: Cache) -> None:
    assert cache.replace("k", os.urandom(2 * MB)) is False
    cache.set("k", os.urandom(2 * MB))
    second = os.urandom(3 * MB)
    assert cache.replace("k", second) is True
    assert cache.get("k") == second


def test_append_and_prepend_add_bytes_to_a_bytes_value(cache: Cache) -> None:
    assert cache.append("k", b"x") is False
    assert cache.prepend("k", b"x") is False
    assert cache.get("k", MISSING) is MISSING, "append created a missing value"
    cache.set("k", b"middle")
    assert cache.append("k", b"-end") is True
    assert cache.prepend("k", b"start-") is True
    assert cache.append("k", bytearray(b"!")) is True
    assert cache.get("k") == b"start-middle-end!"
    cache.set("empty", b"")
    assert cache.prepend("empty", b"\x00\xff") is True
    assert cache.get("empty") == b"\x00\xff"


@pytest.mark.parametrize("value", ["text", 7, 2**40, -1, 1.5, None, [b"a"], {"a": 1}], ids=repr)
def test_append_to_a_value_that_is_not_bytes_is_a_type_error_and_changes_nothing(
    cache: Cache, value: Any
) -> None:
    cache.set("k", value)
    with pytest.raises(TypeError, match="bytes"):
        cache.append("k", b"x")
    with pytest.raises(TypeError, match="bytes"):
        cache.prepend("k", b"x")
    assert cache.get("k", MISSING) == value


@pytest.mark.parametrize("data", ["text", 1, None, [b"x"]], ids=repr)
def test_append_of_data_that_is_not_bytes_is_a_type_error(cache: Cache, data: Any) -> None:
    cache.set("k", b"abc")
    with pytest.raises(TypeError, match="data must be bytes"):
        cache.append("k", data)
    with pytest.raises(TypeError, match="data must be bytes"):
        cache.prepend("k", data)
    assert cache.get("k") == b"abc"


def test_append_to_compressed_and_chunked_bytes_values(cache: Cache) -> None:
    compressible = b"abc" * (100 * 1024)  # stored compressed
    cache.set("z", compressible)
    assert cache.append("z", b"tail") and cache.prepend("z", b"head")
    assert cache.get("z") == b"head" + compressible + b"tail"
    large = os.urandom(2 * MB)  # chunked on memcached
    cache.set("big", large)
    assert cache.append("big", b"tail") and cache.prepend("big", b"head")
    assert cache.get("big") == b"head" + large + b"tail"
    small = os.urandom(1000)
    cache.set("grows", small)
    more = os.urandom(2 * MB)
    assert cache.append("grows", more), "a value that becomes chunked"
    assert cache.get("grows") == small + more


def test_append_through_a_serializer_of_ones_own(make_cache: MakeCache) -> None:
    cache = make_cache(serializer="pickle")
    cache.set("k", b"ab")
    assert cache.append("k", b"cd")
    assert cache.get("k") == b"abcd"
    cache.set("t", ("not", "bytes"))
    with pytest.raises(TypeError):
        cache.append("t", b"x")


def test_concurrent_appends_each_land_once(make_cache: MakeCache) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    caches = [make_cache(namespace=namespace) for _ in range(4)]
    caches[0].set("log", b"")
    caches[0].set("zlog", b"=" * (100 * 1024))  # compressed: read, then compare-and-set

    def work(cache: Cache, index: int) -> None:
        for i in range(25):
            part = b"<%d.%d>" % (index, i)
            assert cache.append("log", part)
            assert cache.append("zlog", part)

    threads = [threading.Thread(target=work, args=(c, n)) for n, c in enumerate(caches)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD)
    expected = sorted(b"<%d.%d>" % (n, i) for n in range(4) for i in range(25))
    for key, skip in (("log", 0), ("zlog", 100 * 1024)):
        log = caches[0].get(key)[skip:]
        parts = sorted(b"<" + part for part in log.split(b"<")[1:])
        assert parts == expected, f"{key}: {len(parts)} parts instead of {len(expected)}"


def test_gets_of_a_missing_key_returns_the_default_and_no_token(cache: Cache) -> None:
    assert cache.gets("k") == (None, None)
    assert cache.gets("k", "dflt") == ("dflt", None)


def test_cas_stores_only_while_the_value_is_unchanged(cache: Cache) -> None:
    cache.set("k", {"v": 1})
    value, token = cache.gets("k")
    assert value == {"v": 1} and token is not None
    assert cache.cas("k", {"v": 2}, token) is True
    assert cache.get("k") == {"v": 2}
    assert cache.cas("k", {"v": 3}, token) is False, "the same token twice"
    assert cache.get("k") == {"v": 2}

    value, token = cache.gets("k")
    cache.set("k", {"v": "other"})
    assert cache.cas("k", {"v": 4}, token) is False, "a write came in between"
    assert cache.get("k") == {"v": "other"}

    value, token = cache.gets("k")
    cache.delete("k")
    assert cache.cas("k", {"v": 5}, token) is False, "the value was deleted"
    assert cache.get("k", MISSING) is MISSING


def test_a_value_written_again_after_gets_fails_the_cas(cache: Cache) -> None:
    cache.set("k", b"same")
    _, token = cache.gets("k")
    cache.set("k", b"different")
    cache.set("k", b"same but new")
    assert token is not None
    assert cache.cas("k", b"x", token) is False
    assert cache.get("k") == b"same but new"


def test_cas_gives_the_value_its_ttl(cache: Cache) -> None:
    cache.set("k", 1, ttl=600)
    _, token = cache.gets("k")
    assert token is not None
    assert cache.cas("k", 2, token, ttl=1)
    time.sleep(2.5)
    assert cache.get("k", MISSING) is MISSING


def test_cas_on_large_values(cache: Cache) -> None:
    first, second = os.urandom(2 * MB), os.urandom(3 * MB)
    cache.set("k", first)
    value, token = cache.gets("k")
    assert value == first and token is not None
    assert cache.cas("k", second, token)
    assert cache.get("k") == second
    assert cache.cas("k", b"small", token) is False
    _, token = cache.gets("k")
    assert token is not None
    assert cache.cas("k", "small", token)
    assert cache.get("k") == "small"


def test_a_token_is_good_for_its_own_key_only(cache: Cache) -> None:
    cache.set("a", 1)
    cache.set("b", 1)
    _, token = cache.gets("a")
    assert token is not None
    with pytest.raises(ValueError, match="another key"):
        cache.cas("b", 2, token)
    with pytest.raises(TypeError, match="CasToken"):
        cache.cas("a", 2, "token")  # type: ignore[arg-type]
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 1}


def test_of_two_cas_with_one_token_exactly_one_wins(make_cache: MakeCache) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    one, two = make_cache(namespace=namespace), make_cache(namespace=namespace)
    for round_ in range(20):
        one.set("k", round_)
        _, token_one = one.gets("k")
        _, token_two = two.gets("k")
        assert token_one is not None and token_two is not None
        barrier = threading.Barrier(2)
        won: list[tuple[bool, str]] = []

        def attempt(
            cache: Cache, token: Any, value: str, barrier: Any, won: list[tuple[bool, str]]
        ) -> None:
            barrier.wait(GUARD)
            won.append((cache.cas("k", value, token), value))

        threads = [
            threading.Thread(target=attempt, args=(one, token_one, "one", barrier, won)),
            threading.Thread(target=attempt, args=(two, token_two, "two", barrier, won)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD)
        assert sorted(result for result, _ in won) == [False, True], f"round {round_}: {won}"
        winner = next(value for result, value in won if result)
        assert one.get("k") == winner


def test_a_counter_kept_by_gets_and_cas_loses_no_update(make_cache: MakeCache) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    caches = [make_cache(namespace=namespace) for _ in range(4)]
    caches[0].set("total", [0])

    def bump(cache: Cache) -> None:
        for _ in range(20):
            while True:
                value, token = cache.gets("total")
                assert token is not None
                if cache.cas("total", [value[0] + 1], token):
                    break

    threads = [threading.Thread(target=bump, args=(cache,)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD)
    assert caches[0].get("total") == [80]


def test_namespaces_do_not_see_each_other(make_cache: MakeCache) -> None:
    one, two = make_cache(), make_cache()
    one.set("k", "one")
    assert two.get("k", MISSING) is MISSING
    two.set("k", "two")
    assert one.get("k") == "one"


def test_two_objects_with_one_namespace_share_values(make_cache: MakeCache) -> None:
    one = make_cache()
    two = make_cache(namespace=one.namespace)
    one.set("k", [1])
    assert two.get("k") == [1]


# -- many at once --------------------------------------------------------------------------------


def test_set_many_and_get_many_of_a_hundred_keys(cache: Cache) -> None:
    values = {f"key-{n}": {"n": n} for n in range(100)}
    assert cache.set_many(values) == []
    asked = [*values, "missing-1", "missing-2"]
    assert cache.get_many(asked) == values


def test_get_many_keeps_stored_nones_and_leaves_out_misses(cache: Cache) -> None:
    cache.set_many({"a": None, "b": 0})
    assert cache.get_many(["a", "b", "c"]) == {"a": None, "b": 0}


def test_get_many_returns_keys_as_given(cache: Cache) -> None:
    cache.set("same", 1)
    assert cache.get_many(["same", b"same"]) == {"same": 1, b"same": 1}
    assert cache.get_many([]) == {}


def test_set_many_serializes_everything_before_writing_anything(cache: Cache) -> None:
    cache.set("a", "old")
    with pytest.raises(distqueue.SerializationError):
        cache.set_many({"a": "new", "b": object()})
    assert cache.get("a") == "old"
    assert cache.get("b", MISSING) is MISSING


# -- counters ------------------------------------------------------------------------------------


def test_incr_creates_a_missing_counter_and_counts(cache: Cache) -> None:
    assert cache.incr("n") == 1
    assert cache.incr("n", 10) == 11
    assert cache.get("n") == 11


def test_decr_stops_at_zero_and_creates_a_missing_counter_at_zero(cache: Cache) -> None:
    assert cache.decr("fresh") == 0
    cache.set("n", 5)
    assert cache.decr("n", 3) == 2
    assert cache.decr("n", 10) == 0
    assert cache.get("n") == 0


def test_a_counter_read_after_shrinking_is_a_plain_int(cache: Cache) -> None:
    # memcached pads a counter that lost digits with spaces ("9 "); get must not care.
    cache.set("n", 10)
    assert cache.decr("n") == 9
    assert cache.get("n") == 9
    assert cache.incr("n", 991) == 1000


def test_counters_are_atomic_under_concurrent_increments(cache: Cache) -> None:
    def bump() -> None:
        for _ in range(50):
            cache.incr("n")

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD)
    assert cache.get("n") == 400


@pytest.mark.parametrize("value", ["text", -1, 1.0, [1]])
def test_incr_on_a_value_that_is_not_a_counter_raises_wrong_type(cache: Cache, value: Any) -> None:
    cache.set("k", value)
    with pytest.raises(distqueue.WrongTypeError):
        cache.incr("k")
    with pytest.raises(distqueue.WrongTypeError):
        cache.decr("k")
    assert cache.get("k") == value


@pytest.mark.parametrize("delta", [-1, 2**63, 1.0, True])
def test_a_bad_delta_is_refused(cache: Cache, delta: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        cache.incr("n", delta)


# -- TTLs ----------------------------------------------------------------------------------------


def test_a_value_expires_after_its_ttl(cache: Cache) -> None:
    cache.set("short", "v", ttl=1)
    cache.set("float", "v", ttl=0.5)
    cache.set("long", "v", ttl=600)
    assert cache.get("short") == "v"
    time.sleep(2.5)  # memcached counts whole seconds; anything longer is safe
    assert cache.get("short", MISSING) is MISSING
    assert cache.get("float", MISSING) is MISSING
    assert cache.get("long") == "v"


def test_default_ttl_applies_when_a_call_gives_none(make_cache: MakeCache) -> None:
    cache = make_cache(default_ttl=1)
    cache.set("k", "v")
    cache.set("kept", "v", ttl=None)
    time.sleep(2.5)
    assert cache.get("k", MISSING) is MISSING
    assert cache.get("kept") == "v"


def test_a_ttl_over_thirty_days_keeps_the_value(cache: Cache) -> None:
    # memcached reads an expiry over 30 days as a Unix time; sent as is, it would be 1970.
    cache.set("k", "v", ttl=31 * 24 * 3600)
    cache.set("year", "v", ttl=365.5 * 24 * 3600)
    assert cache.get("k") == "v"
    assert cache.get("year") == "v"
    assert cache.touch("k", ttl=40 * 24 * 3600)
    assert cache.get("k") == "v"


@pytest.mark.parametrize("years", [50, 1000, 10**9])
def test_a_ttl_of_many_years_keeps_the_value(cache: Cache, years: int) -> None:
    # memcached cannot store an expiry past 2038: sent as is, it would read as already past.
    ttl = years * 365 * 24 * 3600
    assert cache.set("k", "v", ttl=ttl)
    assert cache.add("added", "v", ttl=ttl)
    assert cache.set_many({"a": 1, "b": "x" * (2 * MB)}, ttl=ttl) == []
    assert cache.incr("n", 3, ttl=ttl) == 3
    assert cache.get_many(["k", "added", "a", "b", "n"]) == {
        "k": "v", "added": "v", "a": 1, "b": "x" * (2 * MB), "n": 3
    }  # fmt: skip
    assert cache.touch("k", ttl=ttl)
    assert cache.get("k") == "v"


def test_a_result_with_a_ttl_of_fifty_years_is_kept(cache_url: str) -> None:
    with ResultStore(cache_url, ttl=50 * 365 * 24 * 3600, namespace=f"t-{uuid.uuid4().hex}") as r:
        r.mark_pending("t1")
        r.set_result("t1", 42)
        assert r.wait("t1", timeout=0).value == 42


def test_touch_gives_a_new_ttl(cache: Cache) -> None:
    cache.set("k", "v", ttl=1)
    cache.set("forever", "v", ttl=1)
    assert cache.touch("k", ttl=600) is True
    assert cache.touch("forever", ttl=None) is True
    assert cache.touch("missing", ttl=600) is False
    time.sleep(2.5)
    assert cache.get("k") == "v"
    assert cache.get("forever") == "v"


def test_incr_gives_a_created_counter_the_ttl(cache: Cache) -> None:
    cache.incr("n", ttl=1)
    time.sleep(2.5)
    assert cache.get("n", MISSING) is MISSING


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_a_ttl_that_is_not_a_positive_number_is_refused(cache: Cache, ttl: Any) -> None:
    with pytest.raises(ValueError):
        cache.set("k", "v", ttl=ttl)
    assert cache.get("k", MISSING) is MISSING


@pytest.mark.parametrize("ttl", ["10", True])
def test_a_ttl_that_is_not_a_number_is_a_type_error(cache: Cache, ttl: Any) -> None:
    with pytest.raises(TypeError):
        cache.set("k", "v", ttl=ttl)


# -- keys ----------------------------------------------------------------------------------------

ODD_KEYS = [
    "",
    "with space",
    " leading and trailing ",
    "new\nline",
    "tab\tand\rcarriage",
    "control\x00\x01\x7f",
    "unicode \u00e9\u4e2d\U0001f600",
    "lone surrogate \ud800",
    "x" * 1000,
    "\u00e9" * 1000,
    b"bytes \x00\xff\n",
    b"b" * 1000,
    "a:b#c{d}",
]


@pytest.mark.parametrize("key", ODD_KEYS, ids=lambda k: repr(k)[:40])
def test_any_str_or_bytes_key_works_in_every_call(cache: Cache, key: str | bytes) -> None:
    assert cache.set(key, "v")
    assert cache.get(key) == "v"
    assert cache.get_many([key]) == {key: "v"}
    assert cache.add(key, "w") is False
    assert cache.touch(key, ttl=60)
    assert cache.delete(key)
    assert cache.incr(key) == 1
    assert cache.set_many({key: "w"}) == []
    assert cache.get(key) == "w"


def test_different_odd_keys_never_share_a_value(cache: Cache) -> None:
    keys: list[str | bytes] = [
        *ODD_KEYS[:-3],
        "x" * 999 + "y",
        "with_space",
        "with  space",
        "new\rline",
        "a:b#c{d}",
    ]
    values = {key: n for n, key in enumerate(keys)}
    assert cache.set_many(values) == []
    assert cache.get_many(keys) == values


def test_str_and_bytes_keys_with_the_same_utf8_are_one_key(cache: Cache) -> None:
    cache.set("caf\u00e9", 1)
    assert cache.get("caf\u00e9".encode()) == 1


@pytest.mark.parametrize("key", [1, None, 1.5, ("a",)])
def test_a_key_that_is_not_str_or_bytes_is_a_type_error(cache: Cache, key: Any) -> None:
    with pytest.raises(TypeError):
        cache.set(key, "v")


def test_a_bad_namespace_is_refused() -> None:
    for namespace in ["", "a:b", "a b", "x" * 65, "a#b"]:
        with pytest.raises(ValueError):
            Cache("memory://", namespace=namespace)


# -- values: sizes and serializers ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, MB, 5 * MB], ids=["0B", "1MB", "5MB"])
def test_values_of_0_bytes_1_mb_and_5_mb_round_trip(cache: Cache, size: int) -> None:
    incompressible = os.urandom(size)
    compressible = "abc" * (size // 3)
    assert cache.set("random", incompressible)
    assert cache.set("text", compressible)
    assert cache.get("random") == incompressible
    assert cache.get("text") == compressible
    assert cache.get_many(["random", "text"]) == {"random": incompressible, "text": compressible}


def test_large_values_in_set_many_and_add(cache: Cache) -> None:
    big = os.urandom(3 * MB)
    assert cache.set_many({"a": big, "b": 1}) == []
    assert cache.add("c", big)
    assert cache.add("c", b"other") is False
    assert cache.get_many(["a", "b", "c"]) == {"a": big, "b": 1, "c": big}


def test_overwriting_a_large_value_reads_the_new_one(cache: Cache) -> None:
    cache.set("k", os.urandom(2 * MB))
    second = os.urandom(2 * MB)
    cache.set("k", second)
    assert cache.get("k") == second
    cache.set("k", "small now")
    assert cache.get("k") == "small now"


def test_the_default_serializer_refuses_arbitrary_objects_before_writing(cache: Cache) -> None:
    cache.set("k", "old")
    with pytest.raises(distqueue.SerializationError):
        cache.set("k", object())
    assert cache.get("k") == "old"


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


def test_pickle_is_used_only_when_asked_for(make_cache: MakeCache) -> None:
    cache = make_cache(serializer="pickle")
    cache.set("k", Point(3))
    assert cache.get("k") == Point(3)


# -- stats ---------------------------------------------------------------------------------------


def test_stats_count_hits_and_misses(cache: Cache) -> None:
    cache.set("a", 1)
    cache.get("a")
    cache.get("b")
    cache.get_many(["a", "b", "c"])
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.server_errors) == (2, 3, 0), stats


# -- @cached -------------------------------------------------------------------------------------


def test_cached_runs_the_function_once_per_distinct_call(cache: Cache) -> None:
    calls: list[tuple[Any, ...]] = []

    @cache.cached(ttl=60, name="test.add")
    def add(a: int, b: int = 10) -> int:
        calls.append((a, b))
        return a + b

    assert add(1) == 11
    assert add(1) == 11
    assert add(a=1) == 11
    assert add(1, b=10) == 11
    assert add(1, 2) == 3
    assert calls == [(1, 10), (1, 2)]
    assert add.__name__ == "add"
    assert add.__wrapped__(1) == 11


def test_cached_results_include_none_and_containers(cache: Cache) -> None:
    calls = []

    @cache.cached(name="test.lookup")
    def lookup(key: str) -> Any:
        calls.append(key)
        return None if key == "none" else {"key": key, "set": {1, 2}}

    for _ in range(2):
        assert lookup("none") is None
        assert lookup("x") == {"key": "x", "set": {1, 2}}
    assert calls == ["none", "x"]


def test_arguments_in_any_order_and_container_keys_are_one_call(cache: Cache) -> None:
    calls = []

    @cache.cached(name="test.f")
    def f(options: dict[str, int], tags: set[str]) -> int:
        calls.append(1)
        return len(calls)

    assert f({"a": 1, "b": 2}, {"x", "y", "z"}) == 1
    assert f(tags={"z", "y", "x"}, options={"b": 2, "a": 1}) == 1
    assert f({"a": 1, "b": 3}, {"x"}) == 2


def test_invalidate_forgets_one_call(cache: Cache) -> None:
    calls = []

    @cache.cached(name="test.f")
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(2)
    assert f.invalidate(1) is True
    assert f.invalidate(1) is False
    f(1), f(2)
    assert calls == [1, 2, 1]


def test_cache_clear_forgets_every_call_for_every_handle(make_cache: MakeCache) -> None:
    cache = make_cache()
    other = make_cache(namespace=cache.namespace)  # another process, say
    calls = []

    def f(x: int) -> int:
        calls.append(x)
        return x

    here = cache.cached(name="shared.f")(f)
    there = other.cached(name="shared.f")(f)
    here(1), here(2)
    there(1)
    assert calls == [1, 2]
    assert there.cache_clear() is True
    here(1), here(2)
    assert calls == [1, 2, 1, 2]


def halve(x: int) -> float:
    """A module-level function: its name identifies it."""
    return x / 2


def make_adder(n: int) -> Callable[[int], int]:
    def add(x: int) -> int:
        return x + n

    return add


def logged(func: Callable[[int], float]) -> Callable[[int], float]:
    @functools.wraps(func)
    def wrapper(x: int) -> float:
        return func(x)

    return wrapper


logged_halve = logged(halve)  # named "halve" too, but a closure over what it wraps


class Scale:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def apply(self, x: int) -> int:
        return self.factor * x


def test_a_module_level_function_is_cached_under_its_own_name(cache: Cache) -> None:
    cached_halve = cache.cached()(halve)
    assert cached_halve.name == f"{__name__}.halve"
    assert cached_halve(3) == 1.5
    assert cached_halve(3) == 1.5
    assert cache.stats.hits == 1


@pytest.mark.parametrize(
    ("func", "why"),
    [
        (lambda x: x + 1, "is a lambda"),
        (make_adder(1), "defined inside another function"),
        (logged_halve, "is a closure over func"),
        (Scale(2).apply, "bound to 'Scale' object"),
        (functools.partial(halve), "functools.partial"),
    ],
    ids=["lambda", "closure", "decorator-wrapper", "bound-method", "partial"],
)
def test_a_function_its_name_does_not_identify_is_refused(
    cache: Cache, func: Callable[[int], Any], why: str
) -> None:
    with pytest.raises(TypeError, match=why) as caught:
        cache.cached()(func)
    assert "name=" in str(caught.value)


def test_closures_given_names_of_their_own_keep_their_results_apart(cache: Cache) -> None:
    add_1 = cache.cached(name="adder.1")(make_adder(1))
    add_100 = cache.cached(name="adder.100")(make_adder(100))
    assert add_1(5) == 6
    assert add_100(5) == 105
    assert add_1(5) == 6


def test_a_closure_with_a_key_function_is_accepted(cache: Cache) -> None:
    n = 7
    add = cache.cached(key=lambda x: (n, x))(make_adder(n))
    assert add(1) == 8
    assert add(1) == 8
    assert cache.stats.hits == 1


def test_an_exception_is_not_cached(cache: Cache) -> None:
    calls = []

    @cache.cached(name="test.flaky")
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return x

    with pytest.raises(RuntimeError):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert calls == [1, 1]


def test_an_argument_that_cannot_be_a_key_is_a_type_error(cache: Cache) -> None:
    @cache.cached(name="test.f")
    def f(x: Any) -> Any:
        return x

    with pytest.raises(TypeError, match="key="):
        f(object())


def test_key_function_makes_methods_cacheable(cache: Cache) -> None:
    calls = []

    class Repository:
        def __init__(self, name: str) -> None:
            self.name = name

        @cache.cached(key=lambda self, item: (self.name, item))
        def load(self, item: int) -> str:
            calls.append(item)
            return f"{self.name}:{item}"

    repo = Repository("r")
    assert repo.load(1) == "r:1"
    assert Repository("r").load(1) == "r:1"
    assert Repository("other").load(1) == "other:1"
    assert calls == [1, 1]
    assert Repository.load.invalidate(repo, 1) is True


def test_cached_shortcut_opens_its_own_cache(cache_url: str) -> None:
    calls = []

    @cached(cache_url, ttl=60, name="test.double", namespace=f"t-{uuid.uuid4().hex}")
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    try:
        assert double(4) == 8
        assert double(4) == 8
        assert calls == [4]
        assert isinstance(double.cache, Cache)
        assert double.cache.stats.hits == 1
    finally:
        double.cache.close()


def test_a_result_too_large_for_the_serializer_is_reported_after_running(cache: Cache) -> None:
    @cache.cached(name="test.f")
    def f() -> Any:
        return object()

    with pytest.raises(distqueue.SerializationError):
        f()


def test_many_threads_missing_one_key_run_the_function_once(cache: Cache) -> None:
    calls = []
    started = threading.Barrier(16)
    release = threading.Event()

    @cache.cached(ttl=60, lock_ttl=GUARD, name="test.slow")
    def slow(x: int) -> dict[str, int]:
        calls.append(x)
        release.wait(GUARD)
        return {"x": x}

    results: list[Any] = []

    def call() -> None:
        started.wait(GUARD)
        results.append(slow(7))

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + GUARD
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let every other thread reach its wait
    release.set()
    for thread in threads:
        thread.join(GUARD)
    assert results == [{"x": 7}] * 16
    assert calls == [7], f"the function ran {len(calls)} times"
    stats = cache.stats
    assert stats.stampede_waits + stats.hits == 15, stats  # a late thread may simply hit


def test_when_the_lock_holder_raises_a_waiter_computes(cache: Cache) -> None:
    calls = []
    first_running = threading.Event()
    release = threading.Event()

    @cache.cached(ttl=60, lock_ttl=GUARD, name="test.f")
    def f() -> str:
        calls.append(1)
        if len(calls) == 1:
            first_running.set()
            release.wait(GUARD)
            raise RuntimeError("holder fails")
        return "computed by a waiter"

    outcome: list[Any] = []

    def first() -> None:
        try:
            f()
        except RuntimeError as exc:
            outcome.append(exc)

    holder = threading.Thread(target=first)
    holder.start()
    assert first_running.wait(GUARD)
    waiter_result: list[str] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(f()))
    waiter.start()
    time.sleep(0.2)
    release.set()
    holder.join(GUARD)
    waiter.join(GUARD)
    assert isinstance(outcome[0], RuntimeError)
    assert waiter_result == ["computed by a waiter"]
    assert len(calls) == 2


def test_a_waiter_gives_up_after_lock_ttl_and_computes(cache: Cache) -> None:
    release = threading.Event()
    calls = []

    @cache.cached(ttl=60, lock_ttl=1, name="test.f")
    def f() -> int:
        calls.append(1)
        if len(calls) == 1:
            release.wait(GUARD)  # holds the lock well past its TTL
        return len(calls)

    holder = threading.Thread(target=f)
    holder.start()
    deadline = time.monotonic() + GUARD
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert f() == 2
    finally:
        release.set()
        holder.join(GUARD)
    assert cache.stats.misses == 2, cache.stats


# -- results -------------------------------------------------------------------------------------


@pytest.fixture
def results(cache_url: str) -> Iterator[ResultStore]:
    store = ResultStore(cache_url, ttl=600, namespace=f"t-{uuid.uuid4().hex}")
    yield store
    store.close()


def test_a_result_set_is_returned_by_wait(results: ResultStore) -> None:
    results.mark_pending("t1")
    results.set_result("t1", {"answer": 42})
    outcome = results.wait("t1", timeout=5)
    assert outcome.value == {"answer": 42}
    assert not outcome.failed
    assert outcome.result() == {"answer": 42}
    assert results.wait("t1", timeout=0).value == {"answer": 42}, "waiting again reads it again"


def test_an_exception_is_returned_as_a_failed_outcome(results: ResultStore) -> None:
    results.mark_pending("t1")
    results.set_exception("t1", "ValueError", "bad input", "Traceback (most recent call last):\n")
    outcome = results.wait("t1", timeout=5)
    assert outcome.failed
    assert (outcome.exc_type, outcome.message) == ("ValueError", "bad input")
    with pytest.raises(TaskFailed) as info:
        outcome.result()
    assert info.value.exc_type == "ValueError"
    assert "Traceback" in info.value.traceback_text


def test_a_pending_task_times_out(results: ResultStore) -> None:
    results.mark_pending("t1")
    with pytest.raises(ResultTimeout):
        results.wait("t1", timeout=0.2)
    with pytest.raises(ResultTimeout):
        results.wait("t1", timeout=0)
    with pytest.raises(TimeoutError):
        results.wait("t1", timeout=0.05)


def test_an_unknown_task_is_missing_at_once_not_a_hang(results: ResultStore) -> None:
    with pytest.raises(ResultMissing) as info:
        results.wait("never-submitted")  # no timeout: must still return
    assert info.value.task_id == "never-submitted"
    assert isinstance(info.value, LookupError)


def test_an_expired_result_is_missing(cache_url: str) -> None:
    store = ResultStore(cache_url, ttl=1, namespace=f"t-{uuid.uuid4().hex}")
    try:
        store.mark_pending("t1")
        store.set_result("t1", "v")
        store.mark_pending("t2")
        time.sleep(2.5)
        with pytest.raises(ResultMissing):
            store.wait("t1", timeout=5)
        with pytest.raises(ResultMissing):
            store.wait("t2")  # the pending marker expired too: no hang
    finally:
        store.close()


def test_a_forgotten_result_is_missing(results: ResultStore) -> None:
    results.mark_pending("t1")
    results.set_result("t1", 1)
    results.forget("t1")
    with pytest.raises(ResultMissing):
        results.wait("t1", timeout=5)


def test_mark_pending_never_hides_a_result(results: ResultStore) -> None:
    results.set_result("t1", "done")
    results.mark_pending("t1")
    assert results.wait("t1", timeout=0).value == "done"


def test_a_waiter_wakes_when_the_result_arrives(results: ResultStore) -> None:
    results.mark_pending("t1")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(results.wait("t1", timeout=GUARD)))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "wait returned before the result was set"
    results.set_result("t1", "woken")
    waiter.join(GUARD)
    assert [outcome.value for outcome in got] == ["woken"]


def test_many_waiters_all_wake(results: ResultStore) -> None:
    results.mark_pending("t1")
    got: list[Any] = []
    waiters = [
        threading.Thread(target=lambda: got.append(results.wait("t1", timeout=GUARD).value))
        for _ in range(5)
    ]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)
    results.set_result("t1", 7)
    for waiter in waiters:
        waiter.join(GUARD)
    assert got == [7] * 5


def test_a_large_result_round_trips(results: ResultStore) -> None:
    value = os.urandom(3 * MB)
    results.mark_pending("t1")
    results.set_result("t1", value)
    assert results.wait("t1", timeout=5).value == value


def test_a_result_the_serializer_refuses_is_an_error_before_writing(results: ResultStore) -> None:
    results.mark_pending("t1")
    with pytest.raises(distqueue.SerializationError):
        results.set_result("t1", object())
    with pytest.raises(ResultTimeout):
        results.wait("t1", timeout=0)


def test_a_negative_wait_timeout_is_refused(results: ResultStore) -> None:
    with pytest.raises(ValueError):
        results.wait("t1", timeout=-1)


class Tagged:
    """A serializer of the user's own: it must see every value, str and bytes included."""

    name = "tagged"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def dumps(self, obj: object) -> bytes:
        self.seen.append(obj)
        return b"T" + repr(obj).encode()

    def loads(self, data: bytes) -> Any:
        import ast

        assert data[:1] == b"T"
        return ast.literal_eval(data[1:].decode())


def test_a_serializer_of_ones_own_sees_every_value_but_counters(make_cache: MakeCache) -> None:
    serializer = Tagged()
    cache = make_cache(serializer=serializer)
    for value in ["text", b"bytes", [1], -1]:
        cache.set("k", value)
        assert cache.get("k") == value
    cache.set("n", 5)  # a counter: stored as digits so that incr works
    assert cache.incr("n") == 6
    assert serializer.seen == ["text", b"bytes", [1], -1]


def test_the_public_names_of_the_cache_package() -> None:
    import distqueue.cache

    assert set(distqueue.cache.__all__) == {
        "DEFAULT",
        "Cache",
        "CasToken",
        "CacheStats",
        "CachedFunction",
        "Outcome",
        "OutcomeUnknownError",
        "ResultMissing",
        "ResultStore",
        "ResultTimeout",
        "TaskFailed",
        "ValueTooLargeError",
        "cached",
    }
    for name in distqueue.cache.__all__:
        assert getattr(distqueue.cache, name) is not None
    for error in ("ResultMissing", "ResultTimeout", "TaskFailed", "ValueTooLargeError"):
        assert issubclass(getattr(distqueue.cache, error), distqueue.DistQueueError)
