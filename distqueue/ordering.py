"""Byte strings that sort like the Python values they encode.

:func:`sort_key` is the prefix of a priority queue's sorted-set members. Every member has score
0, so the server orders members byte by byte (``memcmp``), and the key makes that order the one
Python's ``<`` gives the items.

The contract
------------
For two values ``a`` and ``b`` of the supported kinds that Python can order (``a < b`` does not
raise, and no NaN is involved)::

    sort_key(a) < sort_key(b)   if and only if   a < b
    sort_key(a) == sort_key(b)  if and only if   a == b

and, for any values at all:

* no key is a proper prefix of another, so appending bytes (the member's sequence number and
  payload) after two different keys never changes their order;
* the first byte of every key, and of every element's encoding inside a tuple or list, is in
  ``0x01..0xFE``.

Supported kinds, in the fixed order used between kinds that Python cannot compare with each
other: numbers < bytes < str < date < naive datetime < aware datetime < naive time < aware time
< UUID < tuple < list < unorderable. Subclasses of these types are keyed by the value of their
base type (an ``IntEnum`` as its int); a subclass that redefines comparison is not followed.

NaN
---
Python has no order for NaN (every comparison with it is false, and ``Decimal('NaN') < 1``
raises), so distqueue gives it one: NaN is the largest number, above infinity, and all NaNs
(float or ``Decimal``, quiet or signalling, either sign) are equal to each other. Within
tuples the comparison then goes on with the next element: ``(nan, "a")`` sorts before
``(nan, "b")``, and both after ``(inf, "z")``. The memory backend orders NaN by the same rule.

Unorderable values
------------------
``None``, dicts, sets and frozensets (whose ``<`` is a subset test, not an order), complex
numbers and every other object are *unorderable*. Such a value is encoded as the single byte
``0x7F`` and it ends the key: nothing after it is encoded, only the terminators of the tuples
and lists that enclose it. So ``(1, {"a": 1})`` and ``(1, {"b": 2})`` get equal keys (the queue's
first-in-first-out sequence number decides between them) while ``(1, {...})`` still sorts before
``(2, {...})``. Containers nested more than 100 deep are cut off the same way, which also keeps a
list that contains itself from recursing forever.

Layout, byte by byte
--------------------
Every encoding starts with a one-byte tag:

====  ===================  ===========================================================
0x10  number, -infinity    the tag alone
0x11  number, negative     the bytes of the positive encoding of ``-x`` after the tag,
                           each inverted (``0xFF - b``)
0x12  number, zero         the tag alone (0, 0.0, -0.0, False, Decimal('-0') ...)
0x13  number, positive     exponent, digits, 0x00 (see below)
0x14  number, +infinity    the tag alone
0x15  number, NaN          the tag alone
0x20  bytes                content with 0x01 written as 0x01 0x02 and 0x00 as 0x01 0x01,
                           then 0x00
0x21  str                  UTF-8 (``surrogatepass``), escaped and ended like bytes
0x30  date                 ``toordinal()`` as 4 bytes, big-endian
0x31  naive datetime       ``toordinal() * 86400000000`` plus the microseconds of the
                           time of day, 8 bytes, big-endian
0x32  aware datetime       the same for the UTC instant (the value minus its UTC offset),
                           8 bytes, big-endian
0x33  naive time           microseconds since midnight, 8 bytes, big-endian
0x34  aware time           seconds since midnight minus the UTC offset's seconds, plus
                           86400, as 4 bytes; then microseconds minus the offset's
                           microseconds, plus 1000000, as 4 bytes (the order CPython
                           compares aware times in)
0x38  UUID                 its 16 bytes
0x50  tuple                each element's encoding, then 0x00
0x51  list                 each element's encoding, then 0x00
0x7F  unorderable          the tag alone; ends the key (see above)
====  ===================  ===========================================================

A positive finite number is first written exactly as ``0.d1d2...dn * 10**e`` with ``d1 != 0``
and ``dn != 0`` (floats are converted exactly, as ``Decimal(float)`` does). Then:

* ``e`` as an order-preserving integer: for ``e >= 0`` the byte ``0x80 + L`` followed by ``e`` in
  ``L`` big-endian bytes, the fewest that hold it (``L`` is 0 for 0); for ``e < 0`` the byte
  ``0x80 - L`` followed by ``256**L - 1 - |e|`` in ``L`` bytes;
* the digits, two to a byte: digit ``d`` becomes the 4 bits ``d + 1``, so a pair ``a, b`` is the
  byte ``(a + 1) * 16 + (b + 1)`` and a last single digit ``a`` the byte ``(a + 1) * 16``;
* the terminator 0x00, below every digit byte, so that 0.12 sorts before 0.123.

A larger exponent means a larger number; for equal exponents the digits decide, a proper prefix
first. Since these encodings are prefix-free, inverting every byte reverses their order and keeps
them prefix-free, which is how negative numbers are written.

Escaping 0x00 and 0x01 in bytes and str keeps 0x00 out of the content, so the 0x00 terminator
sorts below every content byte and ``"a" < "a\\x00" < "ab"`` holds for the keys too. (The
FoundationDB tuple layer's escape, 0x00 as 0x00 0xFF, sorts the same but is not prefix-free: the
key of ``b""`` would be a prefix of the key of ``b"\\x00"``.) Elements of tuples and lists start
with a tag of at least 0x01, above the container's 0x00 terminator, so a shorter tuple sorts
first.

Limits: aware datetimes are ordered by their UTC instant. Python compares two datetimes that
share one tzinfo object by their wall-clock time instead, which differs only around a repeated
hour of a zone with daylight saving time (``zoneinfo``); fixed offsets always agree.
"""

from __future__ import annotations

import binascii
import datetime
import decimal
import math
import uuid
from collections.abc import Callable

__all__ = ["sort_key"]

_NEG_INFINITY = 0x10
_NEGATIVE = 0x11
_ZERO = 0x12
_POSITIVE = 0x13
_POS_INFINITY = 0x14
_NAN = 0x15
_BYTES = 0x20
_STR = 0x21
_DATE = 0x30
_NAIVE_DATETIME = 0x31
_AWARE_DATETIME = 0x32
_NAIVE_TIME = 0x33
_AWARE_TIME = 0x34
_UUID = 0x38
_TUPLE = 0x50
_LIST = 0x51
_UNORDERABLE = 0x7F
_END = 0x00

_MAX_DEPTH = 100
_INVERT = bytes(range(255, -1, -1))
# Decimal digit d becomes the hexadecimal digit d + 1, so that two digits pack into one byte
# 0x11..0xAA and a lone last digit d into (d + 1) * 16.
_DIGIT_NIBBLES = bytes.maketrans(b"0123456789", b"123456789a")
# Ints this small are turned into digits with str(); larger ones go through Decimal, which is
# not subject to Python's limit on int/str conversions (sys.set_int_max_str_digits, >= 640).
_STR_DIGITS_LIMIT = 10**600
_MICROSECONDS_PER_DAY = 86_400_000_000
_TIME_MICROSECONDS = (3600_000_000, 60_000_000, 1_000_000)


# An encoder appends the encoding of ``item`` to ``out`` and returns True if the key ends there
# (an unorderable value was met). ``depth`` counts the enclosing tuples and lists.
_Encoder = Callable[[object, bytearray, int], bool]


def sort_key(item: object) -> bytes:
    """Return a byte string that sorts like ``item`` (see the module docstring).

    Never raises for the supported kinds; any other value is encoded as unorderable.
    """
    out = bytearray()
    _encode(item, out, 0)
    return bytes(out)


def _encode(item: object, out: bytearray, depth: int) -> bool:
    encoder = _ENCODERS.get(type(item))
    if encoder is None:
        encoder = _encoder_for_subclass(item)
    return encoder(item, out, depth)


def _encoder_for_subclass(item: object) -> _Encoder:
    """The encoder of the supported base type of ``item``, or the unorderable one."""
    for base, encoder in _SUBCLASS_ENCODERS:
        if isinstance(item, base):
            return encoder
    return _encode_unorderable


def _encode_unorderable(item: object, out: bytearray, depth: int) -> bool:
    out.append(_UNORDERABLE)
    return True


# -- numbers -----------------------------------------------------------------------------------


def _ordered_int(n: int) -> bytes:
    """``n`` as a prefix-free byte string that sorts like the integers."""
    if n >= 0:
        length = (n.bit_length() + 7) // 8
        return bytes((0x80 + length,)) + n.to_bytes(length, "big")
    magnitude = -n
    length = (magnitude.bit_length() + 7) // 8
    return bytes((0x80 - length,)) + ((1 << (8 * length)) - 1 - magnitude).to_bytes(length, "big")


# Precomputed for the exponents of every float and of most ints and decimals.
_SMALL_EXPONENTS = {n: _ordered_int(n) for n in range(-400, 700)}


def _append_finite(negative: bool, digits: str, exponent: int, out: bytearray) -> None:
    """Append the number ``(-1 if negative else 1) * 0.<digits> * 10**exponent``.

    ``digits`` holds no leading and no trailing zeros.
    """
    nibbles = digits.encode("ascii").translate(_DIGIT_NIBBLES)
    if len(nibbles) % 2:
        nibbles += b"0"
    encoded_exponent = _SMALL_EXPONENTS.get(exponent)
    if encoded_exponent is None:
        encoded_exponent = _ordered_int(exponent)
    if negative:
        out.append(_NEGATIVE)
        out += encoded_exponent.translate(_INVERT)
        out += binascii.unhexlify(nibbles).translate(_INVERT)
        out.append(0xFF - _END)
    else:
        out.append(_POSITIVE)
        out += encoded_exponent
        out += binascii.unhexlify(nibbles)
        out.append(_END)


def _append_decimal_finite(value: decimal.Decimal, out: bytearray) -> None:
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite: not 'n', 'N' or 'F'
    digits = "".join(map(str, digit_tuple))
    _append_finite(bool(sign), digits.rstrip("0"), len(digits) + exponent, out)


def _encode_int_subclass(item: object, out: bytearray, depth: int) -> bool:
    return _encode_int(int.__int__(item), out, depth)  # type: ignore[arg-type]


def _encode_int(item: object, out: bytearray, depth: int) -> bool:
    value: int = item  # type: ignore[assignment]
    if value == 0:
        out.append(_ZERO)
    elif -_STR_DIGITS_LIMIT < value < _STR_DIGITS_LIMIT:
        digits = str(abs(value))
        _append_finite(value < 0, digits.rstrip("0"), len(digits), out)
    else:
        _append_decimal_finite(decimal.Decimal(value), out)
    return False


def _encode_float(item: object, out: bytearray, depth: int) -> bool:
    value = float.__float__(item)  # type: ignore[arg-type]
    if value == 0.0:
        out.append(_ZERO)
    elif math.isfinite(value):
        _append_decimal_finite(decimal.Decimal(value), out)
    elif value > 0.0:
        out.append(_POS_INFINITY)
    elif value < 0.0:
        out.append(_NEG_INFINITY)
    else:  # NaN: the largest number (see "NaN" above)
        out.append(_NAN)
    return False


def _encode_decimal(item: object, out: bytearray, depth: int) -> bool:
    assert isinstance(item, decimal.Decimal)
    if item.is_nan():
        out.append(_NAN)
    elif item.is_zero():
        out.append(_ZERO)
    elif item.is_infinite():
        out.append(_NEG_INFINITY if item.is_signed() else _POS_INFINITY)
    else:
        _append_decimal_finite(item, out)
    return False


# -- bytes and text ----------------------------------------------------------------------------


def _append_escaped(tag: int, data: bytes, out: bytearray) -> None:
    out.append(tag)
    # The unbound method, so that a bytes subclass is escaped as plain bytes.
    out += bytes.replace(data, b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    out.append(_END)


def _encode_bytes(item: object, out: bytearray, depth: int) -> bool:
    _append_escaped(_BYTES, item, out)  # type: ignore[arg-type]
    return False


def _encode_str(item: object, out: bytearray, depth: int) -> bool:
    _append_escaped(_STR, str.encode(item, "utf-8", "surrogatepass"), out)  # type: ignore[arg-type]
    return False


# -- dates and times ---------------------------------------------------------------------------


def _time_of_day_microseconds(value: datetime.time | datetime.datetime) -> int:
    hours, minutes, seconds = _TIME_MICROSECONDS
    return value.hour * hours + value.minute * minutes + value.second * seconds + value.microsecond


def _encode_date(item: object, out: bytearray, depth: int) -> bool:
    assert isinstance(item, datetime.date)
    out.append(_DATE)
    out += item.toordinal().to_bytes(4, "big")
    return False


def _encode_datetime(item: object, out: bytearray, depth: int) -> bool:
    assert isinstance(item, datetime.datetime)
    local = item.toordinal() * _MICROSECONDS_PER_DAY + _time_of_day_microseconds(item)
    offset = item.utcoffset()
    if offset is None:
        out.append(_NAIVE_DATETIME)
        out += local.to_bytes(8, "big")
    else:
        # An offset is less than one day in magnitude, so this is never negative.
        utc = local - offset // datetime.timedelta(microseconds=1)
        out.append(_AWARE_DATETIME)
        out += utc.to_bytes(8, "big")
    return False


def _encode_time(item: object, out: bytearray, depth: int) -> bool:
    assert isinstance(item, datetime.time)
    offset = item.utcoffset()
    if offset is None:
        out.append(_NAIVE_TIME)
        out += _time_of_day_microseconds(item).to_bytes(8, "big")
        return False
    # CPython orders aware times by (seconds - offset seconds, microseconds - offset
    # microseconds), compared in that order; both parts are made non-negative here.
    seconds = item.hour * 3600 + item.minute * 60 + item.second
    seconds -= offset.days * 86400 + offset.seconds
    out.append(_AWARE_TIME)
    out += (seconds + 86400).to_bytes(4, "big")
    out += (item.microsecond - offset.microseconds + 1_000_000).to_bytes(4, "big")
    return False


def _encode_uuid(item: object, out: bytearray, depth: int) -> bool:
    assert isinstance(item, uuid.UUID)
    out.append(_UUID)
    out += item.bytes
    return False


# -- sequences ---------------------------------------------------------------------------------


def _encode_elements(tag: int, item: object, out: bytearray, depth: int) -> bool:
    out.append(tag)
    ended = depth >= _MAX_DEPTH
    if ended:
        out.append(_UNORDERABLE)
    else:
        for element in item:  # type: ignore[attr-defined]
            if _encode(element, out, depth + 1):
                ended = True
                break
    out.append(_END)
    return ended


def _encode_tuple(item: object, out: bytearray, depth: int) -> bool:
    return _encode_elements(_TUPLE, item, out, depth)


def _encode_list(item: object, out: bytearray, depth: int) -> bool:
    return _encode_elements(_LIST, item, out, depth)


_ENCODERS: dict[type, _Encoder] = {
    int: _encode_int,
    bool: _encode_int_subclass,
    float: _encode_float,
    decimal.Decimal: _encode_decimal,
    bytes: _encode_bytes,
    str: _encode_str,
    datetime.date: _encode_date,
    datetime.datetime: _encode_datetime,
    datetime.time: _encode_time,
    uuid.UUID: _encode_uuid,
    tuple: _encode_tuple,
    list: _encode_list,
}

# For subclasses, in an order where a class comes before its bases (datetime before date).
_SUBCLASS_ENCODERS: tuple[tuple[type, _Encoder], ...] = (
    (int, _encode_int_subclass),
    (float, _encode_float),
    (decimal.Decimal, _encode_decimal),
    (bytes, _encode_bytes),
    (str, _encode_str),
    (datetime.datetime, _encode_datetime),
    (datetime.date, _encode_date),
    (datetime.time, _encode_time),
    (uuid.UUID, _encode_uuid),
    (tuple, _encode_tuple),
    (list, _encode_list),
)
