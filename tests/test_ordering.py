"""sort_key: byte strings that order like Python orders the values they encode."""

from __future__ import annotations

import datetime
import enum
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from distqueue.ordering import sort_key

# -- strategies: values Python can order among themselves, one kind at a time ----------------

UTC = datetime.timezone.utc
fixed_offsets = st.just(UTC) | st.builds(
    datetime.timezone,
    st.timedeltas(
        min_value=datetime.timedelta(hours=-23, minutes=-59),
        max_value=datetime.timedelta(hours=23, minutes=59),
    ),
)

# Numbers of every type mixed, with many values that are equal across types or close together.
small_ints = st.integers(-300, 300)
numbers = st.one_of(
    st.booleans(),
    st.integers(),
    st.builds(lambda n, shift: n << shift, st.integers(), st.integers(0, 17_000)),
    small_ints,
    small_ints.map(float),
    small_ints.map(Decimal),
    st.builds(lambda n, e: Decimal(n).scaleb(e), small_ints, st.integers(-5, 5)),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False).map(Decimal),
    st.floats(-10, 10, width=16),
    st.decimals(allow_nan=False),
    st.sampled_from(
        [
            *(0, 0.0, -0.0, Decimal("-0"), Decimal("0E+5"), False),
            *(1, 1.0, True, Decimal("1.000"), 0.1, Decimal("0.1"), 2**53 + 1, float(2**53)),
            *(1e308, 5e-324, -5e-324, float("inf"), float("-inf")),
            *(Decimal("Infinity"), Decimal("-Infinity"), Decimal("1E+999999"), Decimal("-1E-999")),
            *(10**700, -(10**700)),
        ]
    ),
)
# Small alphabets, so that equal strings and prefixes come up often.
texts = st.text() | st.text(
    st.sampled_from("\x00\x01a\x7f\xe9\ud7ff\ud800\udfff\ue000\uffff\U0001f600")
)
binaries = st.lists(st.sampled_from([0, 1, 0x61, 0x7F, 0xFE, 0xFF])).map(bytes) | st.binary()
dates = st.dates()
naive_datetimes = st.datetimes()
aware_datetimes = st.datetimes(timezones=fixed_offsets)
naive_times = st.times()
aware_times = st.times(timezones=fixed_offsets)
uuids = st.uuids() | st.integers(0, 3).map(lambda n: uuid.UUID(int=n))

scalar_kinds = [
    numbers,
    texts,
    binaries,
    dates,
    naive_datetimes,
    aware_datetimes,
    naive_times,
    aware_times,
    uuids,
]


def tuples_of(kind: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(kind, max_size=4).map(tuple)


def lists_of(kind: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(kind, max_size=4)


# A tuple whose positions each hold one kind, like (priority, name, deadline).
tasks = st.tuples(numbers, texts, naive_datetimes)
jobs = st.tuples(numbers, numbers, binaries)
# Each kind holds values that Python can compare with each other: sequences nest to a fixed
# depth, so that a leaf never meets a sequence at the same position.
kinds = [
    *scalar_kinds,
    *(tuples_of(kind) for kind in scalar_kinds),
    *(lists_of(kind) for kind in scalar_kinds),
    tuples_of(tuples_of(numbers)),
    tuples_of(tuples_of(tuples_of(texts))),
    lists_of(tuples_of(binaries)),
    tuples_of(lists_of(numbers)),
    tasks,
    jobs,
    tuples_of(tasks),
]
same_kind_pairs = st.sampled_from(kinds).flatmap(lambda kind: st.tuples(kind, kind))
same_kind_lists = st.sampled_from(kinds).flatmap(lambda kind: st.lists(kind, max_size=12))

# Anything at all, orderable or not.
anything = st.recursive(
    st.one_of(
        *scalar_kinds,
        st.none(),
        st.floats(),
        st.decimals(),
        st.complex_numbers(),
        st.dictionaries(texts, texts, max_size=2),
        st.frozensets(st.integers(), max_size=2),
    ),
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.lists(inner, max_size=3),
    max_leaves=8,
)


def python_order(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def key_order(a: Any, b: Any) -> int:
    key_a, key_b = sort_key(a), sort_key(b)
    return (key_a > key_b) - (key_a < key_b)


# -- the order matches Python's ----------------------------------------------------------------


@given(same_kind_pairs)
def test_keys_order_like_python_for_values_of_one_kind(pair: tuple[Any, Any]) -> None:
    a, b = pair
    expected = python_order(a, b)
    assert key_order(a, b) == expected, (
        f"{a!r} vs {b!r}: python says {expected}, keys {sort_key(a).hex()} {sort_key(b).hex()}"
    )
    assert (sort_key(a) == sort_key(b)) == (a == b)


# Orderable values of any kinds, mixed inside tuples and lists.
orderable_anything = st.recursive(
    st.one_of(*scalar_kinds), lambda inner: tuples_of(inner) | lists_of(inner), max_leaves=6
)


@given(
    st.lists(orderable_anything, max_size=3),
    same_kind_pairs,
    st.lists(orderable_anything, max_size=2),
    st.lists(orderable_anything, max_size=2),
)
def test_tuples_mixing_kinds_order_like_python(
    prefix: list[Any], pair: tuple[Any, Any], rest_a: list[Any], rest_b: list[Any]
) -> None:
    a = (*prefix, pair[0], *rest_a)
    b = (*prefix, pair[1], *rest_b)
    try:
        expected = python_order(a, b)
    except TypeError:  # the pair is equal and what follows cannot be compared
        assume(False)
    assert key_order(a, b) == expected
    assert (sort_key(a) == sort_key(b)) == (a == b)


@given(same_kind_lists, st.randoms(use_true_random=False))
def test_sorting_by_key_equals_sorted(values: list[Any], rng: random.Random) -> None:
    rng.shuffle(values)
    by_key = sorted(values, key=sort_key)
    by_python = sorted(values)
    # Both sorts are stable, so they must pick the very same objects in the same order.
    assert [id(v) for v in by_key] == [id(v) for v in by_python], (by_key, by_python)


def hours(n: int) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(hours=n))


ASCENDING = {
    "numbers": [
        *(float("-inf"), -(10**700), -1e308, -2, Decimal("-1.5"), -1, -0.5, -5e-324, 0),
        *(5e-324, Decimal("1E-100"), 0.1, 0.5, 1, 1.5, 2, 10, 1e308, 10**700, float("inf")),
    ],
    "str": [
        *("", "\x00", "\x00\x00", "\x01", "\x01\x01", "\x02", "a", "a\x00", "a\x00b", "ab"),
        *("b", "\ud7ff", "\ud800", "\udfff", "\ue000", "\U0010ffff"),
    ],
    "bytes": [
        *(b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff", b"\x01", b"\x01\x00"),
        *(b"\x01\x01", b"\x02", b"a", b"a\x00", b"ab", b"\xff", b"\xff\x00"),
    ],
    "tuples": [(), (0,), (0, 0), (0, 0, 0), (0, 1), (1,), (1, ()), (1, (0,)), (2,)],
    "lists": [[], [b""], [b"", b""], [b"a"]],
    "aware datetimes": [
        datetime.datetime(2024, 1, 1, 12, tzinfo=hours(5)),
        datetime.datetime(2024, 1, 1, 8, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 5, tzinfo=hours(-4)),
    ],
    "times": [datetime.time(0), datetime.time(0, 0, 0, 1), datetime.time(23, 59, 59, 999999)],
    "dates": [datetime.date.min, datetime.date(2024, 2, 29), datetime.date.max],
}


@pytest.mark.parametrize("ascending", ASCENDING.values(), ids=ASCENDING.keys())
def test_known_values_sort_in_python_order(ascending: list[Any]) -> None:
    assert sorted(ascending) == ascending  # the fixture itself is in Python's order
    keys = [sort_key(value) for value in ascending]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    "equal",
    [
        [0, False, 0.0, -0.0, Decimal("0"), Decimal("-0"), Decimal("0E+10")],
        [1, True, 1.0, Decimal("1"), Decimal("1.000"), Decimal("0.1E+1")],
        [0.1, Decimal(0.1)],  # noqa: RUF032 (the exact value of the float)
        [2**64, float(2**64), Decimal(2**64)],
        [float("inf"), Decimal("Infinity")],
        [(1, "a"), (True, "a"), (1.0, "a")],
        [
            datetime.datetime(2024, 1, 1, 12, tzinfo=hours(2)),
            datetime.datetime(2024, 1, 1, 10, tzinfo=UTC),
        ],
    ],
    ids=["zero", "one", "0.1", "2**64", "infinity", "tuples", "instants"],
)
def test_values_python_calls_equal_get_equal_keys(equal: list[Any]) -> None:
    assert all(value == equal[0] for value in equal)
    assert {sort_key(value) for value in equal} == {sort_key(equal[0])}


def test_true_and_false_are_keyed_as_one_and_zero() -> None:
    assert sort_key(True) == sort_key(1)
    assert sort_key(False) == sort_key(0)
    assert sort_key((True, "x")) == sort_key((1, "x"))


def test_subclasses_are_keyed_by_their_base_value() -> None:
    class Priority(enum.IntEnum):
        HIGH = 1
        LOW = 5

    class Name(str):
        pass

    assert sort_key(Priority.HIGH) == sort_key(1)
    assert sort_key((Priority.HIGH, "a")) < sort_key((Priority.LOW, "a"))
    assert sort_key(Name("abc")) == sort_key("abc")


# -- prefix-free keys --------------------------------------------------------------------------


@given(st.tuples(anything, anything), st.binary(), st.binary())
def test_no_key_is_a_proper_prefix_of_another(
    pair: tuple[Any, Any], suffix_a: bytes, suffix_b: bytes
) -> None:
    key_a, key_b = sort_key(pair[0]), sort_key(pair[1])
    if key_a != key_b:
        assert not key_b.startswith(key_a)
        assert not key_a.startswith(key_b)
        # So whatever follows a key (sequence number, payload) cannot change the order.
        assert (key_a + suffix_a < key_b + suffix_b) == (key_a < key_b)


@given(same_kind_pairs, st.binary(), st.binary())
def test_no_key_is_a_proper_prefix_of_another_for_near_values(
    pair: tuple[Any, Any], suffix_a: bytes, suffix_b: bytes
) -> None:
    key_a, key_b = sort_key(pair[0]), sort_key(pair[1])
    if key_a != key_b:
        assert not key_b.startswith(key_a)
        assert not key_a.startswith(key_b)
        assert (key_a + suffix_a < key_b + suffix_b) == (key_a < key_b)


@pytest.mark.parametrize(
    ("shorter", "longer"),
    [
        (b"", b"\x00"),
        (b"", b"\x01"),
        ("", "\x00"),
        ("a", "a\x00"),
        ((), ((),)),
        ((b"",), (b"\x00",)),
    ],
    ids=repr,
)
def test_suffixes_never_reorder_keys_whose_values_extend_each_other(
    shorter: Any, longer: Any
) -> None:
    key_short, key_long = sort_key(shorter), sort_key(longer)
    assert not key_long.startswith(key_short)
    for suffix in (b"\x00", b"\xff", b"\xff" * 9, b"\x01\x01\x00", b"\x00\xff\x00"):
        assert key_short + suffix < key_long


@given(anything)
def test_first_byte_is_never_0x00_or_0xff(value: Any) -> None:
    assert 0x01 <= sort_key(value)[0] <= 0xFE


@given(st.lists(st.sampled_from(kinds).flatmap(lambda kind: kind), max_size=4))
def test_a_tuple_key_is_a_tag_then_its_elements_keys_then_0x00(elements: list[Any]) -> None:
    tag = sort_key(())[:1]
    expected = tag + b"".join(sort_key(element) for element in elements) + b"\x00"
    assert sort_key(tuple(elements)) == expected


# -- unorderable values ------------------------------------------------------------------------


def test_unorderable_values_end_the_key_so_the_caller_falls_back_to_fifo() -> None:
    assert sort_key((1, {"a": 1})) == sort_key((1, {"b": 2}))
    assert sort_key((1, {"a": 1})) < sort_key((2, {"b": 2}))
    assert sort_key((2, {"a": 1})) > sort_key((1, {"b": 2}))
    assert sort_key((1, None, 2)) == sort_key((1, None, 3))
    assert sort_key((1, (None, 5))) == sort_key((1, (None, 4), 9))
    assert sort_key((1, {1})) == sort_key((1, frozenset({1, 2})))


@pytest.mark.parametrize(
    "value",
    [
        *(None, {}, {"a": 1}, set(), frozenset({1})),
        *(1j, object(), bytearray(b"x"), range(3)),
    ],
    ids=lambda value: type(value).__name__,
)
def test_unorderable_values_all_get_one_key(value: Any) -> None:
    assert sort_key(value) == sort_key(None)
    assert sort_key((1, value, 2)) == sort_key((1, None, 3))
    assert sort_key((0, value)) < sort_key((1, value))


# -- NaN: the largest number, all NaNs equal ---------------------------------------------------

NANS = [float("nan"), -float("nan"), Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN")]


@pytest.mark.parametrize("nan", NANS, ids=repr)
def test_nan_sorts_after_every_other_number_and_before_bytes(nan: Any) -> None:
    for number in (float("inf"), Decimal("Infinity"), 10**700, 1e308, 0, -float("inf")):
        assert sort_key(number) < sort_key(nan), number
    assert sort_key(nan) < sort_key(b"")
    assert sort_key(nan) < sort_key("")


@pytest.mark.parametrize("nan", NANS, ids=repr)
def test_every_nan_gets_the_same_key(nan: Any) -> None:
    assert sort_key(nan) == sort_key(float("nan"))


def test_a_nan_in_a_tuple_lets_the_next_element_decide() -> None:
    nan = float("nan")
    assert sort_key((nan, "a")) < sort_key((nan, "b"))
    assert sort_key((float("inf"), "z")) < sort_key((nan, "a"))
    assert sort_key((1, nan, 0)) < sort_key((1, Decimal("NaN"), 1))
    assert sort_key((1, nan)) < sort_key((2, 0))


def test_kinds_python_cannot_compare_have_a_fixed_order() -> None:
    ascending = [
        10**100,
        b"",
        "",
        datetime.date.min,
        datetime.datetime.min,
        datetime.datetime(1, 1, 2, tzinfo=UTC),
        datetime.time.min,
        datetime.time(tzinfo=UTC),
        uuid.UUID(int=0),
        (),
        [],
        None,
    ]
    keys = [sort_key(value) for value in ascending]
    assert keys == sorted(keys)


def test_a_list_that_contains_itself_gets_a_key() -> None:
    value: list[Any] = [1]
    value.append(value)
    assert sort_key(value) == sort_key(value)
    assert sort_key([0, value]) < sort_key(value)


def test_very_deep_nesting_gets_a_key() -> None:
    value: Any = 1
    for _ in range(100_000):
        value = (value,)
    assert sort_key(value).startswith(sort_key(())[:1])
