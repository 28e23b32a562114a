"""The serializers: exact JSON round trips, readable payloads, refusals, and the opt-in pickle."""

from __future__ import annotations

import collections
import datetime
import enum
import json
import math
import pickle
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distqueue.errors import DeserializationError, SerializationError
from distqueue.serializers import JSONSerializer, PickleSerializer, Serializer, get_serializer

JSON = JSONSerializer()

# -- exact comparison --------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """True if ``b`` is an exact copy of ``a``: same types and values, recursively.

    NaN matches NaN, -0.0 only matches -0.0, a Decimal matches only the same digits and exponent,
    dict keys must come in the same order, and timezones must have the same offset and name.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (set, frozenset)):
        unmatched = list(b)
        for x in a:
            for i, y in enumerate(unmatched):
                if same(x, y):
                    del unmatched[i]
                    break
            else:
                return False
        return not unmatched
    if isinstance(a, (datetime.datetime, datetime.time)):
        return bool(
            a == b
            and a.replace(tzinfo=None) == b.replace(tzinfo=None)
            and a.utcoffset() == b.utcoffset()
            and a.tzname() == b.tzname()
        )
    return bool(a == b)


def short_id(value: Any) -> str:
    """A test id for ``value``: its repr, shortened (huge ints have no repr)."""
    if type(value) is int and value.bit_length() > 1000:
        return f"int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def assert_round_trip(value: Any) -> None:
    payload = JSON.dumps(value)
    assert isinstance(payload, bytes)
    decoded = JSON.loads(payload)
    assert same(value, decoded), f"expected {value!r}, got {decoded!r} (payload {payload!r})"


# -- strategies --------------------------------------------------------------------------------

fixed_offsets = st.builds(
    datetime.timezone,
    st.timedeltas(
        min_value=datetime.timedelta(hours=-23, minutes=-59, seconds=-59),
        max_value=datetime.timedelta(hours=23, minutes=59, seconds=59),
    ),
)
timezones = st.none() | st.just(datetime.timezone.utc) | fixed_offsets
texts = st.text(
    st.characters(exclude_categories=())
    | st.characters(categories=["Cs"])  # lone surrogates
    | st.sampled_from('\x00"\\$\u2028\U0010ffff')
)
# Up to about 5,000 digits, past Python's default limit on int/str conversions (4,300).
big_ints = st.builds(lambda n, shift: n << shift, st.integers(), st.integers(0, 17_000))

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_ints,
    st.floats(),
    texts,
    st.binary(),
    st.datetimes(timezones=timezones),
    st.dates(),
    st.times(timezones=timezones),
    # A signaling NaN cannot be hashed; it is covered by `scalars`.
    st.decimals(allow_nan=True).filter(lambda d: not d.is_snan()),
    st.uuids(),
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
scalars = hashable_scalars | st.decimals(allow_nan=True)
dict_keys = hashables | st.sampled_from(["$tuple", "$dict", "$", "$nope", "a"])
values = st.recursive(
    scalars | hashables,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(texts | dict_keys, inner, max_size=4),
        st.dictionaries(dict_keys, inner, max_size=1),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=20,
)


def reject_constant(name: str) -> Any:
    raise AssertionError(f"payload holds the non-standard JSON constant {name}")


# -- round trips -------------------------------------------------------------------------------


@given(values)
def test_json_round_trip_keeps_types_and_values(value: Any) -> None:
    assert_round_trip(value)


@given(values)
def test_json_payload_is_strict_utf8_json(value: Any) -> None:
    payload = JSON.dumps(value)
    json.loads(payload.decode("utf-8", "surrogatepass"), parse_constant=reject_constant)


@pytest.mark.parametrize(
    "value",
    [
        10**4300,
        -(10**10000),
        2**64,
        -(2**63),
        10**600 - 1,
        10**600,
        -0.0,
        float("nan"),
        float("inf"),
        float("-inf"),
        5e-324,
        1.7976931348623157e308,
        "\ud800",
        "a\udfffb\ud83d",
        "\x00",
        "",
        b"",
        b"\x00\xff",
        (),
        (1,),
        [()],
        {"$tuple": [1, 2]},
        {"$": 1},
        {"$nope": 1},
        {"$tuple": 1, "$set": 2},
        {(1, 2): "a", 3: "b", None: "c", "d": 4},
        {1: {2: {3: ()}}},
        {frozenset({1}): set()},
        datetime.datetime(2024, 5, 1, 12, 30, 15, 123456),
        datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc),
        datetime.datetime(
            2024,
            5,
            1,
            1,
            2,
            3,
            4,
            tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        ),
        datetime.datetime(
            1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-23, seconds=-1))
        ),
        datetime.datetime.max,
        datetime.date(1, 1, 1),
        datetime.time(23, 59, 59, 999999),
        datetime.time(1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=-3))),
        Decimal("-0"),
        Decimal("NaN"),
        Decimal("-sNaN123"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("1.500"),
        Decimal("1E+999999"),
        Decimal("-1.23E-456"),
        uuid.UUID(int=0),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ],
    ids=short_id,
)
def test_json_round_trip_of_edge_cases(value: Any) -> None:
    assert_round_trip(value)


def test_json_round_trip_of_nested_mixture() -> None:
    value = {
        "ints": [0, -1, 10**50],
        "tuple": (1, (2.5, "x"), [b"y"]),
        "sets": [set(), {1, 2}, frozenset({("a", None)})],
        "when": [datetime.date(2024, 1, 2), datetime.time(3), datetime.datetime(2024, 1, 2, 3)],
        "money": Decimal("12.30"),
        "id": uuid.UUID(int=1),
        "$odd": {"$tuple": ()},
    }
    assert_round_trip(value)


# -- readable payloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "payload"),
    [
        ("abc", b'"abc"'),
        ("é", '"é"'.encode()),
        ("\x00", b'"\\u0000"'),
        (123, b"123"),
        (-1.5, b"-1.5"),
        (True, b"true"),
        (None, b"null"),
        ([1, 2], b"[1,2]"),
        ({"a": 1}, b'{"a":1}'),
        ({"a": [1, {"b": None}]}, b'{"a":[1,{"b":null}]}'),
        ((1, 2), b'{"$tuple":[1,2]}'),
        (b"\x00\x01", b'{"$bytes":"AAE="}'),
        ({1: "a"}, b'{"$dict":[[1,"a"]]}'),
        ({"$tuple": 1}, b'{"$dict":[["$tuple",1]]}'),
        (float("nan"), b'{"$float":"nan"}'),
        (Decimal("1.50"), b'{"$decimal":"1.50"}'),
        (datetime.date(2024, 5, 1), b'{"$date":"2024-05-01"}'),
    ],
    ids=short_id,
)
def test_json_payloads_are_readable_json(value: Any, payload: bytes) -> None:
    assert JSON.dumps(value) == payload


# -- refusals ----------------------------------------------------------------------------------


class Color(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


class Name(str):
    pass


class Opaque:
    pass


class NamedZone(datetime.tzinfo):
    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)

    def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(0)

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "ONE"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (Color.RED, "Color"),
        (Point(1, 2), "Point"),
        (Name("x"), "Name"),
        (collections.OrderedDict(a=1), "OrderedDict"),
        (collections.defaultdict(list), "defaultdict"),
        (bytearray(b"x"), "bytearray"),
        (1j, "complex"),
        (Opaque(), "Opaque"),
        ([1, {"a": (Opaque(),)}], "Opaque"),
        ({Color.RED: 1}, "Color"),
        ({"a", Color.RED}, "Color"),
        (datetime.datetime(2024, 1, 1, tzinfo=NamedZone()), "NamedZone"),
        (datetime.time(1, tzinfo=NamedZone()), "NamedZone"),
        (
            datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(0), "Z")),
            "timezone",
        ),
    ],
    ids=short_id,
)
def test_json_refuses_unsupported_types_and_subclasses_naming_them(
    value: Any, type_name: str
) -> None:
    with pytest.raises(SerializationError) as excinfo:
        JSON.dumps(value)
    assert isinstance(excinfo.value, TypeError)
    assert type_name in str(excinfo.value), str(excinfo.value)


def test_json_refuses_a_list_that_contains_itself() -> None:
    value: list[Any] = [1]
    value.append([value])
    with pytest.raises(SerializationError, match="contains itself"):
        JSON.dumps(value)


def test_json_refuses_a_dict_that_contains_itself() -> None:
    value: dict[Any, Any] = {}
    value[1] = (value,)
    with pytest.raises(SerializationError, match="contains itself"):
        JSON.dumps(value)


def test_json_refuses_too_deep_nesting_with_a_serialization_error() -> None:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(SerializationError):
        JSON.dumps(value)


def test_json_accepts_the_same_list_twice_when_it_does_not_contain_itself() -> None:
    shared = [1, 2]
    assert JSON.loads(JSON.dumps([shared, (shared,)])) == [[1, 2], ([1, 2],)]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"{",
        b'"abc',
        b'"abc" x',
        b"NaN",
        b"-Infinity",
        b'{"$nope":1}',
        b'{"$tuple":1}',
        b'{"$set":[[1]]}',
        b'{"$frozenset":"ab"}',
        b'{"$dict":[[1]]}',
        b'{"$dict":[[[1],2]]}',
        b'{"$dict":{"a":1}}',
        b'{"$bytes":5}',
        b'{"$bytes":"\xc3\xa9"}',
        b'{"$int":"xyz"}',
        b'{"$float":"1.5"}',
        b'{"$decimal":"abc"}',
        b'{"$decimal":1}',
        b'{"$datetime":"yesterday"}',
        b'{"$date":"2024-13-01"}',
        b'{"$time":"25:00"}',
        b'{"$uuid":"123"}',
        b"[" * 100_000 + b"]" * 100_000,
        pickle.dumps(Opaque()),
    ],
    ids=short_id,
)
def test_json_loads_raises_value_error_for_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(DeserializationError) as excinfo:
        JSON.loads(payload)
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.payload == payload


# -- pickle and get_serializer -----------------------------------------------------------------


def test_pickle_round_trips_objects_json_refuses_only_when_asked_for_by_name() -> None:
    value = {"point": Point(1, 2), "color": Color.RED, "ordered": collections.OrderedDict(a=1)}
    with pytest.raises(SerializationError):
        get_serializer(None).dumps(value)
    serializer = get_serializer("pickle")
    assert serializer.name == "pickle"
    decoded = serializer.loads(serializer.dumps(value))
    assert decoded == value
    assert type(decoded["point"]) is Point
    assert type(decoded["color"]) is Color


def test_pickle_refuses_unpicklable_objects_naming_the_type() -> None:
    with pytest.raises(SerializationError, match="'function'") as excinfo:
        PickleSerializer().dumps(lambda: None)
    assert isinstance(excinfo.value, TypeError)


@pytest.mark.parametrize("payload", [b"", b"garbage", pickle.dumps([1, 2])[:-3]], ids=short_id)
def test_pickle_loads_raises_value_error_for_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(DeserializationError) as excinfo:
        PickleSerializer().loads(payload)
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("spec", [None, "json"])
def test_get_serializer_defaults_to_json(spec: str | None) -> None:
    serializer = get_serializer(spec)
    assert isinstance(serializer, JSONSerializer)
    assert serializer.name == "json"


def test_get_serializer_returns_pickle_by_name() -> None:
    assert isinstance(get_serializer("pickle"), PickleSerializer)


def test_get_serializer_returns_a_custom_serializer_unchanged() -> None:
    class Upper:
        name = "upper"

        def dumps(self, obj: object) -> bytes:
            return str(obj).upper().encode()

        def loads(self, data: bytes) -> Any:
            return data.decode()

    custom: Serializer = Upper()
    assert get_serializer(custom) is custom


@pytest.mark.parametrize(
    ("spec", "named"),
    [("yaml", "'yaml'"), ("JSON ", "'JSON '"), (JSONSerializer, "JSONSerializer"), (42, "42")],
    ids=short_id,
)
def test_get_serializer_refuses_anything_else_naming_it(spec: Any, named: str) -> None:
    with pytest.raises(ValueError, match="unknown serializer") as excinfo:
        get_serializer(spec)
    assert named in str(excinfo.value)
