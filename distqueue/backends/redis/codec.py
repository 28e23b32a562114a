"""How a queue's items are stored on Redis, and read back (no I/O).

A FIFO or LIFO queue stores the serializer's bytes as they are. A priority queue stores each
item as a sorted-set member (all with score 0, so Redis orders them by their bytes)::

    sort key | sequence: 16 hex digits, added by the server | payload | len(sort key): 8 hex digits

The sort key (:func:`distqueue.ordering.sort_key`) orders members as the items compare; the
sequence keeps equal items first-in first-out and makes every member unique; the trailing
length lets the payload be cut out again. The client sends the sort key and
``payload + length`` apart (lua/put_priority.lua joins them around the sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import DeserializationError
from ...ordering import sort_key
from ...serializers import Serializer
from ..base import Kind


class ItemCodec:
    """Encodes the items of one queue for its put scripts, and decodes what its scripts
    return."""

    __slots__ = ("_loads", "dumps", "name", "priority", "serializer")

    def __init__(self, name: str, kind: Kind, serializer: Serializer) -> None:
        self.name = name
        self.serializer = serializer
        self.priority = kind is Kind.PRIORITY
        self.dumps = serializer.dumps
        self._loads = serializer.loads

    def put_args(self, items: Sequence[Any]) -> list[Any]:
        """The arguments that carry ``items`` to a put script (see lua/put_*.lua)."""
        dumps = self.dumps
        if not self.priority:
            return [dumps(item) for item in items]
        args: list[Any] = []
        for item in items:
            payload = dumps(item)
            key = sort_key(item)
            args.append(key)
            args.append(payload + b"%08x" % len(key))
        return args

    def payload(self, raw: bytes) -> bytes:
        """The serializer's bytes inside a stored value (a sorted-set member carries more)."""
        if self.priority and len(raw) >= 24:
            try:
                key_length = int(raw[-8:], 16)
            except ValueError:  # not a member distqueue wrote; decoding it will fail
                return raw
            if key_length + 24 <= len(raw):
                return raw[key_length + 16 : -8]
        return raw

    def decode(self, raw: bytes) -> Any:
        """The item in a stored value; whatever the serializer raises when it cannot be read."""
        return self._loads(self.payload(raw) if self.priority else raw)

    def decode_all(self, raws: list[bytes]) -> tuple[list[Any], list[bytes], Exception | None]:
        """The items in stored values, the values that could not be decoded, and the first
        error met."""
        if not self.priority:
            try:
                return [self._loads(raw) for raw in raws], [], None
            except Exception:  # one of them is bad: sort them out one by one below
                pass
        items: list[Any] = []
        bad: list[bytes] = []
        first: Exception | None = None
        for raw in raws:
            try:
                items.append(self.decode(raw))
            # Whatever a serializer raises, the payload is unusable: the caller keeps it as a
            # dead letter, never drops it.
            except Exception as exc:
                bad.append(raw)
                first = first or exc
        return items, bad, first

    def why_dead(self, error: Exception) -> str:
        """The reason kept with a dead letter that could not be decoded."""
        return f"could not be decoded by the {self.serializer.name} serializer: {error}"

    def undecodable(self, raw: bytes, error: Exception) -> DeserializationError:
        """The error for a caller who got nothing but undecodable values."""
        return DeserializationError(
            f"queue {self.name!r}: an item could not be decoded by the "
            f"{self.serializer.name} serializer ({error}); it was kept as a dead letter",
            queue=self.name,
            payload=self.payload(raw),
        )
