"""Deque: collections.deque's semantics in memory, on a real redis-server and on a Redis
Cluster; blocking pops woken by other threads and processes; handles sharing one name; maxlen
agreement; garbage in the deque's keys; lost replies.

The state machine runs random calls on ``collections.deque`` and on a :class:`distqueue.Deque`
(through two handles on one name) and compares every result and exception type. Items are
small ints and strings, for which Python's equality and the JSON serializer's agree (on Redis,
``count``, ``index``, ``remove`` and ``in`` compare serialized forms).
"""

from __future__ import annotations

import collections
import copy
import functools
import math
import operator
import os
import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from faults import FaultyProxy
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from servers import RedisServer
from threads import run_in_thread, wait_until_blocked

import distqueue
from distqueue import Deque

DEQUE_BACKENDS = ["memory", "redis", "cluster"]

_machine_settings = settings(
    max_examples=40,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=DEQUE_BACKENDS)
def deque_url(request: pytest.FixtureRequest) -> str:
    """The URL of each storage a Deque has: memory, one redis-server, a Redis Cluster."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("cluster_url"))


@pytest.fixture
def make_deque(deque_url: str) -> Iterator[Callable[..., Deque[Any]]]:
    """``make_deque(iterable, maxlen, name=...)``: a Deque on the storage under test; the same
    name gives another handle on the same deque. Deleted and closed afterwards."""
    made: list[Deque[Any]] = []

    def make(*args: Any, name: str | None = None, **kwargs: Any) -> Deque[Any]:
        d: Deque[Any] = Deque(*args, url=deque_url, name=name or f"dq-{uuid.uuid4().hex}", **kwargs)
        made.append(d)
        return d

    yield make
    for d in made:
        d.delete()
        d.close()


# -- the state machine -------------------------------------------------------------------------

ITEMS = st.one_of(st.integers(-2, 3), st.sampled_from(["a", "b", ""]))
INDEXES = st.integers(-12, 12)
SMALL_LISTS = st.lists(ITEMS, max_size=8)
MAXLENS = st.one_of(st.none(), st.integers(0, 10), st.none())


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("returned", call())
    except Exception as exc:  # the exception's type is the outcome compared
        return ("raised", type(exc).__name__)


class DequeMachine(RuleBasedStateMachine):
    """Every call goes to a ``collections.deque`` (the model) and to a Deque on ``URL``, through
    one of two handles on the same name; their outcomes must be equal, and so must their
    contents after every step."""

    URL = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.model: collections.deque[Any] = collections.deque()
        self.handles: list[Deque[Any]] = []
        self.current = 0
        self.others: list[Deque[Any]] = []

    @initialize(items=st.lists(ITEMS, max_size=12), maxlen=MAXLENS)
    def open(self, items: list[Any], maxlen: int | None) -> None:
        name = f"machine-{uuid.uuid4().hex}"
        self.model = collections.deque(items, maxlen)
        first: Deque[Any] = Deque(items, maxlen, url=self.URL, name=name)
        second: Deque[Any] = Deque(maxlen=maxlen, url=self.URL, name=name)
        self.handles = [first, second]

    @property
    def d(self) -> Deque[Any]:
        return self.handles[self.current]

    def both(self, model_call: Callable[[Any], Any], our_call: Callable[[Any], Any]) -> Any:
        expected = _outcome(lambda: model_call(self.model))
        got = _outcome(lambda: our_call(self.d))
        assert got == expected, f"expected {expected}, got {got}"
        return got

    def same(self, call: Callable[[Any], Any]) -> Any:
        return self.both(call, call)

    def teardown(self) -> None:
        for d in [*self.handles, *self.others]:
            d.delete()
            d.close()

    @invariant()
    def contents_agree(self) -> None:
        if self.handles:
            assert list(self.d) == list(self.model)
            assert len(self.d) == len(self.model)
            assert self.d.maxlen == self.model.maxlen

    @rule()
    def switch_handle(self) -> None:
        self.current = 1 - self.current

    @rule(x=ITEMS)
    def append(self, x: Any) -> None:
        self.same(lambda d: d.append(x))

    @rule(x=ITEMS)
    def appendleft(self, x: Any) -> None:
        self.same(lambda d: d.appendleft(x))

    @rule()
    def pop(self) -> None:
        self.same(lambda d: d.pop())

    @rule()
    def popleft(self) -> None:
        self.same(lambda d: d.popleft())

    @rule(left=st.booleans())
    def pop_blocking_without_waiting(self, left: bool) -> None:
        self.both(
            lambda m: m.popleft() if left else m.pop(),
            lambda d: d.popleft(block=True, timeout=0) if left else d.pop(block=True, timeout=0),
        )

    @rule(xs=SMALL_LISTS)
    def extend(self, xs: list[Any]) -> None:
        self.same(lambda d: d.extend(xs))

    @rule(xs=SMALL_LISTS)
    def extendleft(self, xs: list[Any]) -> None:
        self.same(lambda d: d.extendleft(xs))

    @rule()
    def extend_with_itself(self) -> None:
        self.same(lambda d: d.extend(d))

    @rule(n=st.integers(-9, 9) | st.sampled_from([10**20 + 1, -(10**20) - 3]))
    def rotate(self, n: int) -> None:
        self.same(lambda d: d.rotate(n))

    @rule()
    def rotate_once(self) -> None:
        self.same(lambda d: d.rotate())

    @rule()
    def clear(self) -> None:
        self.same(lambda d: d.clear())

    @rule(x=ITEMS)
    def count(self, x: Any) -> None:
        self.same(lambda d: d.count(x))

    @rule(x=ITEMS, bounds=st.lists(INDEXES | st.just(10**30), max_size=2))
    def index(self, x: Any, bounds: list[int]) -> None:
        self.same(lambda d: d.index(x, *bounds))

    @rule(i=INDEXES | st.just(10**30), x=ITEMS)
    def insert(self, i: int, x: Any) -> None:
        self.same(lambda d: d.insert(i, x))

    @rule(x=ITEMS)
    def remove(self, x: Any) -> None:
        self.same(lambda d: d.remove(x))

    @rule()
    def reverse(self) -> None:
        self.same(lambda d: d.reverse())

    @rule(i=INDEXES | st.just(-(10**30)))
    def getitem(self, i: int) -> None:
        self.same(lambda d: d[i])

    @rule(i=INDEXES, x=ITEMS)
    def setitem(self, i: int, x: Any) -> None:
        def assign(d: Any) -> None:
            d[i] = x

        self.same(assign)

    @rule(i=INDEXES)
    def delitem(self, i: int) -> None:
        def delete(d: Any) -> None:
            del d[i]

        self.same(delete)

    @rule(key=st.sampled_from(["a", 1.5, None, slice(0, 1)]))
    def index_of_the_wrong_type(self, key: Any) -> None:
        self.same(lambda d: d[key])

    @rule(x=ITEMS)
    def contains(self, x: Any) -> None:
        self.same(lambda d: x in d)

    @rule()
    def reversed_and_bool(self) -> None:
        self.same(lambda d: (list(reversed(d)), bool(d)))

    @rule()
    def copy(self) -> None:
        def copied(d: Any) -> Any:
            c = d.copy()
            if isinstance(c, Deque):
                self.others.append(c)
                assert c.name != d.name
            return (list(c), c.maxlen)

        self.same(copied)

    @rule()
    def concatenate_with_itself(self) -> None:
        def added(d: Any) -> Any:
            c = d + d
            if isinstance(c, Deque):
                self.others.append(c)
            return (list(c), c.maxlen)

        self.same(added)

    @rule(n=st.integers(-1, 2), right=st.booleans())
    def multiply(self, n: int, right: bool) -> None:
        def multiplied(d: Any) -> Any:
            c = n * d if right else d * n
            if isinstance(c, Deque):
                self.others.append(c)
            return (list(c), c.maxlen)

        self.same(multiplied)

    @rule(xs=SMALL_LISTS)
    def add_in_place(self, xs: list[Any]) -> None:
        def added(d: Any) -> Any:
            before = d
            d += xs
            return d is before

        self.same(added)

    @rule(n=st.integers(-1, 2))
    def multiply_in_place(self, n: int) -> None:
        def multiplied(d: Any) -> Any:
            before = d
            d *= n
            return d is before

        self.same(multiplied)

    @rule(xs=SMALL_LISTS)
    def compare(self, xs: list[Any]) -> None:
        other_model = collections.deque(xs, self.model.maxlen)
        other = self.d.copy()  # on the same connections: cheaper than a new handle
        self.others.append(other)
        other.clear()
        other.extend(xs)

        def compared(d: Any, o: Any) -> Any:
            ops = (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge)
            results = [_outcome(functools.partial(op, d, o)) for op in ops]
            results.append(_outcome(lambda: d == list(xs)))
            return results

        self.both(lambda m: compared(m, other_model), lambda d: compared(d, other))

    @rule()
    def repr_shows_the_items_and_maxlen(self) -> None:
        expected = repr(self.model).removeprefix("deque(").removesuffix(")")
        got = repr(self.d)
        assert got.startswith(f"Deque({expected}"), (expected, got)

    @rule()
    def maxlen_is_read_only(self) -> None:
        self.same(lambda d: setattr(d, "maxlen", 3))


def _run_machine(url: str) -> None:
    machine = type("Machine", (DequeMachine,), {"URL": url})
    if url == "memory://":
        chosen = settings(_machine_settings, max_examples=80)
    else:
        # Shrinking a failure over the network runs for minutes, past the test's timeout: a
        # server's failure is shown as found (memory's, shrunk, is usually the same one).
        chosen = settings(_machine_settings, phases=[Phase.generate])
        if url.startswith("redis+cluster"):
            # every handle the machine opens reads the cluster's layout
            chosen = settings(chosen, max_examples=15)
    run_state_machine_as_test(machine, settings=chosen)


def test_random_calls_agree_with_collections_deque(deque_url: str) -> None:
    _run_machine(deque_url)


# -- the deque API beyond the machine ----------------------------------------------------------


def test_the_constructor_checks_its_arguments_as_deque_does() -> None:
    with pytest.raises(ValueError):
        Deque(maxlen=-1)
    with pytest.raises(TypeError):
        Deque(maxlen=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Deque(name="")
    with pytest.raises(ValueError):
        Deque(url="nosuch://x")
    with pytest.raises(ValueError):
        Deque(serializer="nosuch")
    assert list(Deque("abc", 2)) == ["b", "c"]


def test_a_deque_is_a_mutable_sequence_and_unhashable() -> None:
    d: Deque[int] = Deque([1])
    assert isinstance(d, collections.abc.MutableSequence)
    with pytest.raises(TypeError):
        hash(d)
    assert Deque[int] is not Deque  # generic alias, as deque[int]


def test_a_memory_deque_without_a_name_is_private_and_a_named_one_shared() -> None:
    a: Deque[int] = Deque([1])
    b: Deque[int] = Deque()
    assert (list(a), list(b), a.name) == ([1], [], None)
    name = f"shared-{uuid.uuid4().hex}"
    c: Deque[int] = Deque([1], name=name)
    e: Deque[int] = Deque([2], name=name)
    assert list(c) == [1, 2]
    assert e.popleft() == 1


def test_items_on_memory_are_the_objects_themselves() -> None:
    item = object()
    d: Deque[object] = Deque([item])
    assert copy.copy(d)[0] is item
    assert copy.deepcopy(Deque([[1]]))[0] == [1]
    inner = [1]
    assert copy.deepcopy(Deque([inner]))[0] is not inner
    assert d.pop() is item


def test_items_on_redis_round_trip_through_the_serializer(redis_url: str) -> None:
    with Deque[Any](url=redis_url) as d:
        d.extend([(1, "a"), {"k": [1, 2]}, b"raw", None, 2.5])
        assert list(d) == [(1, "a"), {"k": [1, 2]}, b"raw", None, 2.5]
        with pytest.raises(distqueue.SerializationError):
            d.append(object())
        with pytest.raises(distqueue.SerializationError):
            d.extend([1, object()])
        assert len(d) == 5  # nothing of the refused extend was added
        # an item the serializer refuses cannot be in the deque, as in collections.deque
        stranger = object()
        assert (stranger in d, d.count(stranger)) == (False, 0)
        with pytest.raises(ValueError):
            d.index(stranger)
        with pytest.raises(ValueError):
            d.remove(stranger)
        d.delete()


def test_equal_items_with_different_payloads_are_different_on_redis(redis_url: str) -> None:
    with Deque([1, 1.0, True], url=redis_url) as d:
        assert (d.count(1), d.count(1.0), d.count(True)) == (1, 1, 1)
        assert d.index(True) == 2
        d.remove(1.0)
        assert list(d) == [1, True]
        d.delete()


def test_iteration_pages_through_a_long_redis_deque_both_ways(redis_url: str) -> None:
    from distqueue.deques.redis import PAGE

    items = list(range(2 * PAGE + 7))
    with Deque(items, url=redis_url) as d:
        assert list(d) == items
        assert list(reversed(d)) == items[::-1]
        d.rotate(PAGE + 3)
        expected = collections.deque(items)
        expected.rotate(PAGE + 3)
        assert list(d) == list(expected)
        d.insert(PAGE, -1)
        expected.insert(PAGE, -1)
        del d[PAGE + 1]
        del expected[PAGE + 1]
        d *= 2
        expected *= 2
        assert list(d) == list(expected)
        d.reverse()
        expected.reverse()
        assert list(d) == list(expected)
        d.delete()


def test_a_redis_deque_travels_to_another_process_by_name(redis_url: str) -> None:
    with Deque([1, 2], 5, url=redis_url) as d:
        again = pickle.loads(pickle.dumps(d))
        assert (again.name, again.maxlen, list(again)) == (d.name, 5, [1, 2])
        again.close()
        with pytest.raises(TypeError):
            pickle.dumps(Deque())
        d.delete()


def test_copy_add_and_mul_make_new_deques_under_fresh_names(redis_url: str) -> None:
    with Deque([1, 2], 3, url=redis_url, name=f"src-{uuid.uuid4().hex}") as d:
        made = [d.copy(), d + d, d * 2]
        try:
            assert [list(m) for m in made] == [[1, 2], [2, 1, 2], [2, 1, 2]]
            assert {m.maxlen for m in made} == {3}
            names = {m.name for m in made}
            assert d.name not in names and len(names) == 3
            again: Deque[int] = Deque(maxlen=3, url=redis_url, name=made[0].name)
            assert list(again) == [1, 2]  # the copy lives on the server under its name
            again.close()
            deep = copy.deepcopy(d)  # a new deque too, not another handle on this one
            made.append(deep)
            assert deep.name != d.name and list(deep) == [1, 2]
        finally:
            for m in made:
                m.delete()
                m.close()
        d.delete()


def test_a_copy_shares_its_connections_until_the_last_handle_is_closed(redis_url: str) -> None:
    d: Deque[int] = Deque([1, 2], url=redis_url)
    c = d.copy()
    d.close()
    d.close()  # twice: still one release
    c.append(3)  # the copy still works after its original was closed
    assert list(c) == [1, 2, 3]
    pool = c._backend._client.connection_pool  # type: ignore[attr-defined]

    def open_sockets() -> int:
        return sum(conn._sock is not None for conn in pool._available_connections)

    assert open_sockets() > 0
    c.delete()
    c.close()
    assert open_sockets() == 0  # the last close closed the clients
    reopened: Deque[int] = Deque(url=redis_url, name=d.name)
    assert list(reopened) == [1, 2]
    reopened.delete()
    reopened.close()


# -- blocking pops -----------------------------------------------------------------------------


def test_a_blocked_popleft_is_woken_by_an_append_from_another_thread(
    make_deque: Callable[..., Deque[Any]],
) -> None:
    d = make_deque()
    producer = make_deque(name=d.name)
    thread, outcome = run_in_thread(lambda: d.popleft(block=True))
    wait_until_blocked(thread, d)
    producer.append("work")
    thread.join(10)
    assert outcome == ["work"]
    assert len(d) == 0


def test_blocked_pops_at_both_ends_each_get_one_item(
    make_deque: Callable[..., Deque[Any]],
) -> None:
    d = make_deque()
    left, left_outcome = run_in_thread(lambda: d.popleft(block=True, timeout=30))
    right, right_outcome = run_in_thread(lambda: d.pop(block=True, timeout=30))
    wait_until_blocked([left, right], d, count=2)
    d.extend(["first", "last"])
    left.join(10)
    right.join(10)
    got = sorted([*left_outcome, *right_outcome])
    assert got == ["first", "last"], got
    assert len(d) == 0


def test_a_blocking_pop_with_a_timeout_raises_index_error_when_it_runs_out(
    make_deque: Callable[..., Deque[Any]],
) -> None:
    d = make_deque()
    with pytest.raises(IndexError):
        d.pop(block=True, timeout=0.05)
    with pytest.raises(IndexError):
        d.popleft(block=True, timeout=0)
    d.append(1)
    assert d.pop(block=True, timeout=0) == 1


@pytest.mark.parametrize("timeout", [-1, -0.001, math.nan])
def test_a_negative_timeout_is_a_value_error_only_when_blocking(
    make_deque: Callable[..., Deque[Any]], timeout: float
) -> None:
    d = make_deque()
    with pytest.raises(ValueError):
        d.pop(block=True, timeout=timeout)
    with pytest.raises(ValueError):
        d.popleft(block=True, timeout=timeout)
    with pytest.raises(IndexError):
        d.pop(block=False, timeout=timeout)


@pytest.mark.slow
def test_a_blocked_pop_is_woken_by_another_process(redis_url: str, tmp_path: Path) -> None:
    name = f"procs-{uuid.uuid4().hex}"
    with Deque[Any](maxlen=10, url=redis_url, name=name) as d:
        thread, outcome = run_in_thread(lambda: d.popleft(block=True, timeout=60))
        wait_until_blocked(thread, d)
        script = (
            "import sys, distqueue\n"
            "d = distqueue.Deque(maxlen=10, url=sys.argv[1], name=sys.argv[2])\n"
            "d.append({'from': 'another process'})\n"
            "d.close()\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, redis_url, name],
            check=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        thread.join(10)
        assert outcome == [{"from": "another process"}]
        d.delete()


def test_a_deque_through_the_sentinels_is_the_masters_deque(sentinel_url: str) -> None:
    name = f"sentinel-{uuid.uuid4().hex}"
    with Deque[int](maxlen=3, url=sentinel_url, name=name) as d:
        thread, outcome = run_in_thread(lambda: d.popleft(block=True, timeout=60))
        wait_until_blocked(thread, d)
        with Deque[int](maxlen=3, url=sentinel_url, name=name) as other:
            other.extend([1, 2, 3, 4])
        thread.join(10)
        assert outcome == [2]
        assert list(d) == [3, 4]
        d.delete()


# -- handles on one name -----------------------------------------------------------------------


def test_two_handles_on_one_name_see_one_deque(make_deque: Callable[..., Deque[Any]]) -> None:
    a = make_deque([1, 2], 3)
    b = make_deque([3, 4], 3, name=a.name)  # appended to what the name holds
    assert list(a) == [2, 3, 4]
    b.appendleft(0)
    assert a.pop() == 3
    assert list(b) == [0, 2]


def test_handles_must_agree_on_maxlen(make_deque: Callable[..., Deque[Any]]) -> None:
    d = make_deque(maxlen=3)
    for other in (4, None, 0):
        with pytest.raises(ValueError, match="maxlen"):
            make_deque(maxlen=other, name=d.name)
    assert make_deque(maxlen=3, name=d.name).maxlen == 3


def test_a_maxlen_is_recorded_even_for_an_empty_deque_until_it_is_deleted(
    redis_url: str,
) -> None:
    name = f"bound-{uuid.uuid4().hex}"
    first: Deque[Any] = Deque(maxlen=2, url=redis_url, name=name)
    with pytest.raises(ValueError, match="maxlen=2"):
        Deque(url=redis_url, name=name)
    first.delete()
    unbounded: Deque[Any] = Deque(url=redis_url, name=name)
    with pytest.raises(ValueError, match="maxlen=None"):
        first.append(1)  # the name now holds an unbounded deque
    assert len(unbounded) == 0
    unbounded.delete()
    first.close()
    unbounded.close()


# -- garbage in the deque's keys ---------------------------------------------------------------


def test_a_key_of_another_type_is_a_wrong_type_error(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    d: Deque[Any] = Deque([1], url=redis_url)
    key = d._backend.keys.list  # type: ignore[attr-defined]
    raw.delete(key)
    raw.set(key, "not a list")
    for call in (
        lambda: d.append(1),
        d.pop,
        lambda: d.rotate(1),
        lambda: len(d),
        lambda: list(d),
        lambda: d[0],
        lambda: 1 in d,
    ):
        with pytest.raises(distqueue.WrongTypeError) as caught:
            call()
        assert caught.value.key == key
    assert raw.get(key) == b"not a list"  # left as found
    d.delete()
    d.close()
    raw.close()


def test_a_meta_key_of_another_type_refuses_the_open(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    name = f"garbage-{uuid.uuid4().hex}"
    from distqueue.deques.redis import DequeKeys

    meta = DequeKeys(name).meta
    raw.rpush(meta, "x")
    with pytest.raises(distqueue.WrongTypeError) as caught:
        Deque([1, 2], url=redis_url, name=name)
    assert caught.value.key == meta
    assert raw.exists(DequeKeys(name).list) == 0  # nothing was added
    raw.delete(meta)
    raw.close()


def test_a_token_key_of_another_type_is_a_wrong_type_error(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    d: Deque[Any] = Deque([1, 2], url=redis_url)
    avail = d._backend.keys.avail  # type: ignore[attr-defined]
    raw.delete(avail)
    raw.set(avail, "garbage")
    for call in (d.pop, lambda: d.append(3), d.clear, lambda: d.remove(1)):
        with pytest.raises(distqueue.WrongTypeError) as caught:
            call()
        assert caught.value.key == avail
    raw.delete(avail)
    assert list(d) == [1, 2]  # nothing was changed
    d.delete()
    d.close()
    raw.close()


def test_an_undecodable_item_raises_deserialization_error_with_its_bytes(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    d: Deque[Any] = Deque([1], url=redis_url)
    raw.rpush(d._backend.keys.list, b"\xff not json")  # type: ignore[attr-defined]
    with pytest.raises(distqueue.DeserializationError) as caught:
        list(d)
    assert caught.value.payload == b"\xff not json"
    with pytest.raises(distqueue.DeserializationError) as caught:
        d.pop()
    assert caught.value.payload == b"\xff not json"
    assert list(d) == [1]
    d.delete()
    d.close()
    raw.close()


def test_a_server_out_of_memory_refuses_appends_but_lets_pops_drain_it(tmp_path: Path) -> None:
    from servers import require_binary

    server = RedisServer(require_binary("redis-server"), tmp_path)
    client = redis.Redis(port=server.port)
    try:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", used + 2_000_000)
        d: Deque[str] = Deque(url=server.url)
        blob = "x" * 20_000
        added = 0
        with pytest.raises(distqueue.BackendError, match="OOM") as info:
            for _ in range(1000):
                d.extend([blob] * 10)
                added += 10
        assert not isinstance(info.value, distqueue.BackendConnectionError)
        assert added > 0 and len(d) == added  # the refused extend added nothing
        # every way out of the full server still works
        assert d.pop() == blob
        d.rotate(3)
        d.reverse()
        del d[0]
        d.remove(blob)
        assert d.popleft(block=True, timeout=1) == blob
        d.clear()
        d.append("room again")
        assert list(d) == ["room again"]
        d.close()
    finally:
        client.close()
        server.kill()


def test_replies_kept_for_retries_do_not_pile_up(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    d: Deque[str] = Deque(url=redis_url)
    for _ in range(200):
        d.append("x" * 1000)
        assert d.popleft() == "x" * 1000
    replies = list(raw.scan_iter(match=d._backend.keys.reply + "*", count=1000))  # type: ignore[attr-defined]
    assert 1 <= len(replies) <= 2, replies
    d.delete()
    d.close()
    raw.close()


# -- lost replies ------------------------------------------------------------------------------

LIMITS = "socket_timeout=1.5&connect_timeout=1&retry_window=4"


@pytest.fixture
def proxied(redis_server: RedisServer) -> Iterator[tuple[FaultyProxy, Deque[Any], Deque[Any]]]:
    """A proxy, and one new deque twice: through the proxy, and directly."""
    proxy = FaultyProxy(redis_server.port)
    name = f"lost-{uuid.uuid4().hex}"
    faulty: Deque[Any] = Deque(url=proxy.url(LIMITS), name=name)
    direct: Deque[Any] = Deque(url=redis_server.url, name=name)
    len(faulty)  # a connection in the pool, so that the fault hits the call itself
    yield proxy, faulty, direct
    direct.delete()
    faulty.close()
    direct.close()
    proxy.close()


def test_an_append_whose_reply_is_lost_appends_once(
    proxied: tuple[FaultyProxy, Deque[Any], Deque[Any]],
) -> None:
    proxy, faulty, direct = proxied
    proxy.drop_reply()
    faulty.append("x")
    assert proxy.drops == 1
    assert list(direct) == ["x"]


def test_a_pop_whose_reply_is_lost_returns_that_item(
    proxied: tuple[FaultyProxy, Deque[Any], Deque[Any]],
) -> None:
    proxy, faulty, direct = proxied
    direct.extend(["first", "second", "third"])
    proxy.drop_reply(b"first")
    assert faulty.popleft() == "first"
    assert proxy.drops == 1
    assert list(direct) == ["second", "third"]


def test_a_blocked_pop_whose_reply_is_lost_returns_the_item(
    proxied: tuple[FaultyProxy, Deque[Any], Deque[Any]],
) -> None:
    proxy, faulty, direct = proxied
    thread, outcome = run_in_thread(lambda: faulty.pop(block=True, timeout=30))
    wait_until_blocked(thread, direct)
    proxy.drop_reply(b"awaited")
    direct.append("awaited")
    thread.join(20)
    assert outcome == ["awaited"]
    assert proxy.drops == 1
    assert len(direct) == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.rotate(1),
        lambda d: d.insert(1, "new"),
        lambda d: d.remove("b"),
        lambda d: d.__delitem__(0),
        lambda d: d.extendleft(["y", "z"]),
        lambda d: d.__imul__(2),
        lambda d: d.reverse(),
        lambda d: d.__setitem__(-1, "q"),
        lambda d: d.clear(),
    ],
    ids=["rotate", "insert", "remove", "delitem", "extendleft", "imul", "reverse", "set", "clear"],
)
def test_a_change_whose_reply_is_lost_happens_once(
    proxied: tuple[FaultyProxy, Deque[Any], Deque[Any]], change: Callable[[Any], Any]
) -> None:
    proxy, faulty, direct = proxied
    direct.extend(["a", "b", "c", "b"])
    model = collections.deque(direct)
    change(model)
    proxy.drop_reply()
    change(faulty)
    assert proxy.drops == 1
    assert list(direct) == list(model)


def test_a_server_that_is_down_is_a_connection_error_within_the_retry_window() -> None:
    from servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?retry_window=0.3&connect_timeout=0.2"
    with pytest.raises(distqueue.BackendConnectionError):
        Deque(url=url)


def test_threads_popping_one_memory_deque_take_each_item_once() -> None:
    d: Deque[int] = Deque(range(2000))
    taken: list[int] = []
    lock = threading.Lock()

    def drain() -> None:
        while True:
            try:
                item = d.popleft()
            except IndexError:
                return
            with lock:
                taken.append(item)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(2000))


# -- ?wait_replicas=N --------------------------------------------------------------------------


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[Any]:
    """A primary and its replica (tests/test_replicas.py)."""
    from test_replicas import Pair

    servers = Pair(tmp_path)
    yield servers
    servers.close()


def test_with_wait_replicas_a_change_returns_once_the_replica_has_it(replicated: Any) -> None:
    from distqueue.deques.redis import DequeKeys

    name = f"confirmed-{uuid.uuid4().hex}"
    quick = "wait_timeout=0.2&retry_window=1&socket_timeout=2"
    d: Deque[Any] = Deque(url=f"{replicated.primary.url}?wait_replicas=1&{quick}", name=name)
    key = DequeKeys(name).list
    d.extend(range(20))
    assert replicated.replica_client.llen(key) == 20
    assert d.popleft() == 0
    assert replicated.replica_client.llen(key) == 19
    replicated.pause_replica()
    with pytest.raises(distqueue.OutcomeUnknownError):
        d.append("unconfirmed")
    replicated.resume_replica()
    assert d[-1] == "unconfirmed"  # on the primary, unconfirmed: never run twice
    assert d.count("unconfirmed") == 1
    d.close()
