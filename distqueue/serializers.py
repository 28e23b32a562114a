"""Turning queue items into bytes and back.

A serializer is any object with a ``name`` and two methods, ``dumps`` and ``loads`` (the
:class:`Serializer` protocol). Two ship with distqueue:

``JSONSerializer`` (``"json"``, the default)
    Safe: loading a payload never runs code. Payloads are UTF-8 JSON, readable with ``redis-cli``.
    Round trips exactly (same types, same values, recursively) ``None``, ``bool``, ``int``,
    ``float``, ``str``, ``bytes``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``,
    ``datetime.datetime``, ``datetime.date``, ``datetime.time``, ``decimal.Decimal`` and
    ``uuid.UUID``. Anything else, including subclasses of those types, is refused.

``PickleSerializer`` (``"pickle"``, only when asked for by name)
    Accepts nearly any Python object, but **loading a payload runs code**: use it only when every
    process that can write to the queue is trusted.

Errors: ``dumps`` raises :class:`~distqueue.errors.SerializationError` (a ``TypeError``) naming
the type it cannot encode, before producing any output; ``loads`` raises
:class:`~distqueue.errors.DeserializationError` (a ``ValueError``) for a payload it cannot decode.

The JSON payload format
-----------------------
Values JSON has a type for are written as plain JSON: ``"abc"``, ``123``, ``1.5``, ``true``,
``null``, ``[1,2]``, ``{"a":1}``. Every other value is a JSON object with exactly one key, a tag
starting with ``$``:

==============  ==============================================================================
``$tuple``      ``{"$tuple":[1,2]}``
``$set``        ``{"$set":[1,2]}`` (elements in iteration order)
``$frozenset``  ``{"$frozenset":[1,2]}``
``$dict``       ``{"$dict":[[1,"a"],[2,"b"]]}``: a dict with a key that is not a ``str``, or a
                dict with a single key starting with ``$`` (which would read as a tag)
``$bytes``      ``{"$bytes":"AAE="}`` (standard base64)
``$int``        ``{"$int":"-1f..."}`` (hexadecimal): an int of more than 600 digits, which
                Python's int/str conversion limit (``sys.set_int_max_str_digits``) could refuse
``$float``      ``{"$float":"nan"}``, ``"inf"`` or ``"-inf"`` (strict JSON has no literal for them)
``$decimal``    ``{"$decimal":"-1.50E+3"}`` (``str()`` of the Decimal, so NaN, -0, exponents
                and the number of digits are kept)
``$datetime``   ``{"$datetime":"2024-05-01T12:00:00.000001+02:00"}`` (``isoformat()``)
``$date``       ``{"$date":"2024-05-01"}``
``$time``       ``{"$time":"12:00:00+02:00"}``
``$uuid``       ``{"$uuid":"12345678-1234-5678-1234-567812345678"}``
==============  ==============================================================================

Text is written without ``\\u`` escapes (except for control characters) and encoded with the
``surrogatepass`` error handler, so strings holding lone surrogates round trip too.

A datetime or time may carry no tzinfo or a fixed-offset :class:`datetime.timezone` without a
custom name; other tzinfo objects (``zoneinfo.ZoneInfo``, ...) would not round trip and are
refused. The ``fold`` attribute is not kept: it has no effect on naive values and fixed offsets.
"""

from __future__ import annotations

import binascii
import datetime
import decimal
import hashlib
import hmac
import json
import math
import pickle
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from distqueue.errors import DeserializationError, SerializationError

__all__ = [
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "SignedSerializer",
    "get_serializer",
]


class Serializer(Protocol):
    """What a queue needs from a serializer.

    ``name`` identifies the format (``"json"``, ``"pickle"``, ...).

    ``dumps(obj)`` returns the payload for ``obj``. It raises
    :class:`~distqueue.errors.SerializationError` (a ``TypeError``) naming the type of the value it
    cannot encode; it never returns a partial payload.

    ``loads(data)`` returns the value a payload encodes. It raises a ``ValueError`` for a payload
    it cannot decode (the built-in serializers raise
    :class:`~distqueue.errors.DeserializationError`).
    """

    name: str

    def dumps(self, obj: object) -> bytes:
        """Return the payload encoding ``obj``; raise SerializationError if it cannot."""
        ...

    def loads(self, data: bytes) -> Any:
        """Return the value ``data`` encodes; raise a ValueError if it is malformed."""
        ...


# --------------------------------------------------------------------------------------------
# JSON: encoding
# --------------------------------------------------------------------------------------------

# Ints at least this large in magnitude (more than 600 digits) are written as "$int" in hex:
# Python may refuse to convert them to or from decimal text (the limit can be lowered to 640).
_PLAIN_INT_LIMIT = 10**600

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    allow_nan=False,  # non-finite floats are tagged beforehand; this is a safety net
    check_circular=False,  # cycles are detected while converting, with a clearer error
)
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _unsupported(obj: object) -> SerializationError:
    return SerializationError(
        f"cannot serialize object of type {type(obj).__name__!r} with the json serializer"
    )


def _check_tzinfo(obj: datetime.datetime | datetime.time) -> None:
    """Refuse a tzinfo that would not come back as an equal ``datetime.timezone``."""
    tz = obj.tzinfo
    if tz is None:
        return
    if type(tz) is not datetime.timezone:
        raise SerializationError(
            f"cannot serialize {type(obj).__name__} with tzinfo of type "
            f"{type(tz).__name__!r} with the json serializer: only naive values and "
            "fixed-offset datetime.timezone objects round trip"
        )
    offset = tz.utcoffset(None)
    if tz.tzname(None) != datetime.timezone(offset).tzname(None):
        raise SerializationError(
            f"cannot serialize {type(obj).__name__} with the named timezone {tz!r} with the "
            "json serializer: the name would be lost; use datetime.timezone(offset)"
        )


def _to_json(obj: object, active: set[int]) -> Any:
    """Return ``obj`` as a tree of JSON-native values, tagging what JSON cannot express.

    ``active`` holds the ids of the containers being converted (the path from the root), to
    detect a container that contains itself.
    """
    kind = type(obj)
    if kind is str or kind is bool or obj is None:
        return obj
    if kind is int:
        if -_PLAIN_INT_LIMIT < obj < _PLAIN_INT_LIMIT:  # type: ignore[operator]
            return obj
        return {"$int": format(obj, "x")}
    if kind is float:
        if math.isfinite(obj):  # type: ignore[arg-type]
            return obj
        return {"$float": repr(obj)}  # 'nan', 'inf' or '-inf'
    if kind is list or kind is tuple or kind is dict or kind is set or kind is frozenset:
        key = id(obj)
        if key in active:
            raise SerializationError(
                f"cannot serialize a {kind.__name__} that contains itself with the json serializer"
            )
        active.add(key)
        try:
            if kind is dict:
                return _dict_to_json(obj, active)  # type: ignore[arg-type]
            items = [_to_json(item, active) for item in obj]  # type: ignore[attr-defined]
        finally:
            active.discard(key)
        if kind is list:
            return items
        return {_CONTAINER_TAGS[kind]: items}
    converter = _SCALAR_CONVERTERS.get(kind)
    if converter is None:
        raise _unsupported(obj)
    return converter(obj)


def _dict_to_json(obj: dict[Any, Any], active: set[int]) -> Any:
    plain = True
    for key in obj:
        if type(key) is not str:
            plain = False
            break
    if plain and len(obj) == 1 and next(iter(obj)).startswith("$"):
        plain = False  # would read back as a tag
    if plain:
        return {key: _to_json(value, active) for key, value in obj.items()}
    return {
        "$dict": [[_to_json(key, active), _to_json(value, active)] for key, value in obj.items()]
    }


def _bytes_to_json(obj: Any) -> Any:
    return {"$bytes": binascii.b2a_base64(obj, newline=False).decode("ascii")}


def _datetime_to_json(obj: Any) -> Any:
    _check_tzinfo(obj)
    return {"$datetime": obj.isoformat()}


def _time_to_json(obj: Any) -> Any:
    _check_tzinfo(obj)
    return {"$time": obj.isoformat()}


_CONTAINER_TAGS: dict[type, str] = {tuple: "$tuple", set: "$set", frozenset: "$frozenset"}

_SCALAR_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    bytes: _bytes_to_json,
    datetime.datetime: _datetime_to_json,
    datetime.date: lambda obj: {"$date": obj.isoformat()},
    datetime.time: _time_to_json,
    decimal.Decimal: lambda obj: {"$decimal": str(obj)},
    uuid.UUID: lambda obj: {"$uuid": str(obj)},
}


# --------------------------------------------------------------------------------------------
# JSON: decoding
# --------------------------------------------------------------------------------------------


# The decoding helpers below raise plain ValueError; JSONSerializer.loads turns every failure
# into one DeserializationError that also carries the payload.


def _expect(value: object, kind: type, tag: str) -> None:
    if type(value) is not kind:
        raise ValueError(f"{tag} expects a {kind.__name__}, got {type(value).__name__}")


def _tuple_from_json(value: Any) -> Any:
    _expect(value, list, "$tuple")
    return tuple(value)


def _set_from_json(value: Any) -> Any:
    _expect(value, list, "$set")
    return set(value)


def _frozenset_from_json(value: Any) -> Any:
    _expect(value, list, "$frozenset")
    return frozenset(value)


def _dict_from_json(value: Any) -> Any:
    _expect(value, list, "$dict")
    for pair in value:
        if type(pair) is not list or len(pair) != 2:
            raise ValueError("$dict expects [key, value] pairs")
    return dict(value)


def _bytes_from_json(value: Any) -> Any:
    _expect(value, str, "$bytes")
    return binascii.a2b_base64(value.encode("ascii"))


def _int_from_json(value: Any) -> Any:
    _expect(value, str, "$int")
    return int(value, 16)


def _float_from_json(value: Any) -> Any:
    if value not in ("nan", "inf", "-inf"):
        raise ValueError("$float expects 'nan', 'inf' or '-inf'")
    return float(value)


def _decimal_from_json(value: Any) -> Any:
    _expect(value, str, "$decimal")
    try:
        return decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(f"invalid $decimal {value!r}") from None


def _datetime_from_json(value: Any) -> Any:
    _expect(value, str, "$datetime")
    return datetime.datetime.fromisoformat(value)


def _date_from_json(value: Any) -> Any:
    _expect(value, str, "$date")
    return datetime.date.fromisoformat(value)


def _time_from_json(value: Any) -> Any:
    _expect(value, str, "$time")
    return datetime.time.fromisoformat(value)


def _uuid_from_json(value: Any) -> Any:
    _expect(value, str, "$uuid")
    return uuid.UUID(value)


_TAG_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$tuple": _tuple_from_json,
    "$set": _set_from_json,
    "$frozenset": _frozenset_from_json,
    "$dict": _dict_from_json,
    "$bytes": _bytes_from_json,
    "$int": _int_from_json,
    "$float": _float_from_json,
    "$decimal": _decimal_from_json,
    "$datetime": _datetime_from_json,
    "$date": _date_from_json,
    "$time": _time_from_json,
    "$uuid": _uuid_from_json,
}


def _object_hook(obj: dict[str, Any]) -> Any:
    """Turn a one-key ``{"$tag": value}`` object back into the value it stands for."""
    if len(obj) != 1:
        return obj
    [(key, value)] = obj.items()
    if key[:1] != "$":
        return obj
    decoder = _TAG_DECODERS.get(key)
    if decoder is None:
        raise ValueError(f"unknown tag {key!r}")
    return decoder(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_hook=_object_hook, parse_constant=_reject_constant)
_scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class JSONSerializer:
    """The safe default: JSON payloads; loading never runs code.

    See the module docstring for the supported types and the payload format. Only values whose
    type is exactly one of the supported types are accepted: subclasses (``IntEnum``,
    named tuples, ``OrderedDict``, ``str`` subclasses, ...) would come back as their base type,
    so they are refused like any other object.
    """

    name = "json"

    def dumps(self, obj: object) -> bytes:
        """Return the UTF-8 JSON payload for ``obj``.

        Raises :class:`~distqueue.errors.SerializationError` (a ``TypeError``) naming the type
        of the first value that cannot be encoded, for a container that contains itself, and
        for containers nested too deeply to convert.
        """
        kind = type(obj)
        # Fast paths for the most common top-level values.
        if kind is str:
            return _encode_str(obj).encode("utf-8", "surrogatepass")  # type: ignore[arg-type]
        if kind is int:
            if -_PLAIN_INT_LIMIT < obj < _PLAIN_INT_LIMIT:  # type: ignore[operator]
                return int.__repr__(obj).encode("ascii")
        elif kind is float:
            if math.isfinite(obj):  # type: ignore[arg-type]
                return float.__repr__(obj).encode("ascii")
        elif kind is bool:
            return b"true" if obj else b"false"
        elif obj is None:
            return b"null"
        elif kind is bytes:
            return b'{"$bytes":"' + binascii.b2a_base64(obj, newline=False) + b'"}'  # type: ignore[arg-type]
        try:
            tree = _to_json(obj, set())
            text = _ENCODER.encode(tree)
        except RecursionError:
            raise SerializationError(
                f"cannot serialize object of type {kind.__name__!r} with the json "
                "serializer: it is nested too deeply"
            ) from None
        return text.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> Any:
        """Return the value encoded by the JSON payload ``data``.

        Never runs code. Raises :class:`~distqueue.errors.DeserializationError` (a
        ``ValueError``) if ``data`` is not UTF-8 JSON, uses an unknown tag, or gives a tag a
        value of the wrong shape.
        """
        try:
            text = data.decode("utf-8", "surrogatepass")
            if text[:1] == '"':  # fast path for a top-level string
                value, end = _scan_string(text, 1)
                if end == len(text):
                    return value
            return _DECODER.decode(text)
        # A malformed payload surfaces as whichever error the failing step raises: ValueError
        # (JSON syntax, UTF-8, base64, a tag's value), TypeError (an unhashable set element or
        # dict key) or RecursionError (nesting deeper than the decoder can follow).
        except (ValueError, TypeError, RecursionError) as exc:
            raise DeserializationError(f"malformed json payload: {exc}", payload=data) from exc


class PickleSerializer:
    """Pickle payloads: nearly any Python object, but **loading a payload runs code**.

    Unpickling can execute arbitrary code chosen by whoever wrote the payload. Use this
    serializer only when every process that can write to the queue's storage is trusted. It is
    never chosen implicitly: ask for it with ``serializer="pickle"``.
    """

    name = "pickle"

    def dumps(self, obj: object) -> bytes:
        """Return ``pickle.dumps(obj)`` with the highest protocol.

        Raises :class:`~distqueue.errors.SerializationError` (a ``TypeError``) naming the type of
        ``obj`` if it cannot be pickled.
        """
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        # Pickling runs arbitrary __reduce__/__getstate__ code that may raise anything; every
        # such failure means the same thing to the caller: this object cannot be stored.
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize object of type {type(obj).__name__!r} with the pickle "
                f"serializer: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """Return ``pickle.loads(data)``. This runs code chosen by whoever wrote ``data``.

        Raises :class:`~distqueue.errors.DeserializationError` (a ``ValueError``) if ``data``
        cannot be unpickled.
        """
        try:
            return pickle.loads(data)
        # pickle documents that a malformed payload may raise nearly any exception
        # (UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ...).
        except Exception as exc:
            raise DeserializationError(f"malformed pickle payload: {exc}", payload=data) from exc


_BY_NAME: dict[str, Callable[[], Serializer]] = {
    "json": JSONSerializer,
    "pickle": PickleSerializer,
}


class SignedSerializer:
    """Another serializer's payloads behind an HMAC-SHA256 of them under ``key``: ``loads``
    checks the signature (in constant time) before the inner serializer sees a byte, and raises
    :class:`~distqueue.errors.DeserializationError` for a payload not signed with ``key``. The
    Executor and its workers keep pickle results this way, so that a result forged by whoever
    can write to the results store is refused before pickle could run any of it.

    ``name`` is the inner serializer's: the format on the wire is the inner one, signed.
    """

    DIGEST_SIZE = 32

    def __init__(self, inner: Serializer, key: bytes, purpose: bytes = b"distqueue result") -> None:
        if not key:
            raise ValueError("a signing key must not be empty")
        self.inner = inner
        self.name = inner.name
        # the purpose keeps a signature made for one use from passing for another
        self._mac = hmac.new(key, purpose + b"\0", hashlib.sha256)

    def _sign(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.digest()

    def dumps(self, obj: object) -> bytes:
        payload = self.inner.dumps(obj)
        return self._sign(payload) + payload

    def loads(self, data: bytes) -> Any:
        signature, payload = data[: self.DIGEST_SIZE], data[self.DIGEST_SIZE :]
        if len(signature) < self.DIGEST_SIZE or not hmac.compare_digest(
            signature, self._sign(payload)
        ):
            raise DeserializationError(
                "the payload's signature does not match the signing key: it was not written "
                "by a holder of the key, so it is not loaded",
                payload=bytes(data),
            )
        return self.inner.loads(payload)

    def __repr__(self) -> str:
        return f"SignedSerializer({self.inner!r})"


def get_serializer(spec: Serializer | str | None) -> Serializer:
    """Return the serializer ``spec`` asks for.

    ``None`` and ``"json"`` give a :class:`JSONSerializer`, ``"pickle"`` a
    :class:`PickleSerializer`, and an object with callable ``dumps`` and ``loads`` is returned
    unchanged. Raises ``ValueError`` naming ``spec`` for anything else (an unknown name, a
    serializer class instead of an instance, ...).
    """
    if spec is None:
        return JSONSerializer()
    if isinstance(spec, str):
        factory = _BY_NAME.get(spec)
        if factory is None:
            known = ", ".join(repr(name) for name in _BY_NAME)
            raise ValueError(f"unknown serializer {spec!r}: expected one of {known}")
        return factory()
    if isinstance(spec, type):
        raise ValueError(f"unknown serializer {spec!r}: pass an instance, not a class")
    if callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return spec
    raise ValueError(
        f"unknown serializer {spec!r}: expected 'json', 'pickle' or an object with "
        "dumps() and loads() methods"
    )
