"""Values over a backend: serializing, compressing, chunking, and reading it all back.

:class:`ValueStore` is shared by :class:`~distqueue.cache.Cache` and
:class:`~distqueue.cache.ResultStore`. It raises the backend's errors as they are; the two
classes above it apply their own rule for a failed server (a miss, or an error). The stored
format is described in :mod:`.frames`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from ..serializers import JSONSerializer, PickleSerializer, Serializer
from .base import CacheBackend, Failure, logger
from .errors import ValueTooLargeError
from .frames import Corrupt, Manifest, decode_body, encode_body, new_manifest, read_manifest
from .keys import Keyspace

ITEM_OVERHEAD = 512
"""Bytes of an item's size limit kept for memcached's item header and the key."""

_ALWAYS_FITS = 1024 - ITEM_OVERHEAD  # memcached refuses an item size limit below 1 KiB


class Missing(enum.Enum):
    """The marker of a value that is not there (a miss, or a corrupt value)."""

    MISSING = 0


MISSING = Missing.MISSING


class ValueStore:
    """Encode, write, read and decode values over one backend.

    Writing is in two steps, so that every error in the caller's data comes before anything
    is written: :meth:`encode` turns a value into its *body* (raising ``SerializationError``),
    then a write cuts a body too large for one item into chunks (raising
    ``ValueTooLargeError`` when chunking is off) before it sends anything.
    """

    def __init__(
        self,
        backend: CacheBackend,
        keys: Keyspace,
        serializer: Serializer,
        *,
        chunking: bool,
        compress_min_size: int | None,
    ) -> None:
        self.backend = backend
        self.keys = keys
        self.serializer = serializer
        self.chunking = chunking
        self.compress_min_size = compress_min_size
        self._dumps = serializer.dumps
        self.loads = serializer.loads
        # str and bytes skip the built-in serializers (same values back, no code run); a
        # serializer of the user's own sees every value but counters.
        self._native_text = type(serializer) in (JSONSerializer, PickleSerializer)

    # -- writing -------------------------------------------------------------------------------

    def encode(self, value: object) -> bytes:
        """The body of ``value``; raises ``SerializationError`` from the serializer."""
        return encode_body(value, self._dumps, self.compress_min_size, self._native_text)

    def _plan(self, body: bytes) -> tuple[bytes, dict[bytes, bytes]]:
        """The item for a body and the chunks to write first (none when the body fits)."""
        if len(body) <= _ALWAYS_FITS:
            return body, {}
        limit = self.backend.item_size_limit()
        room = None if limit is None else limit - ITEM_OVERHEAD
        if room is None or len(body) <= room:
            return body, {}
        if not self.chunking:
            raise ValueTooLargeError(
                f"the value takes {len(body)} bytes (serialized"
                f"{', compressed' if body[:1] == b'z' else ''}), more than the {room} bytes that "
                "fit in one item of the server; nothing was written (chunking is off)",
                size=len(body),
                limit=room,
            )
        manifest, pieces = new_manifest(body, room)
        chunks = {
            self.keys.chunk_key(manifest.version, index): piece
            for index, piece in enumerate(pieces)
        }
        return manifest.encode(), chunks

    def write(self, key: bytes, body: bytes, ttl: float | None) -> None:
        """Store one body (chunks first, then its own item); raise on failure."""
        head, chunks = self._plan(body)
        if chunks:
            self._write_chunks(key, chunks, ttl)
        self.backend.set(key, head, ttl)

    def add(self, key: bytes, body: bytes, ttl: float | None) -> bool:
        """Store one body only if ``key`` holds nothing; raise on failure."""
        head, chunks = self._plan(body)
        if chunks:
            self._write_chunks(key, chunks, ttl)
        return self.backend.add(key, head, ttl)

    def publish(self, key: bytes, body: bytes, ttl: float | None, wake_key: bytes) -> None:
        """Store one body and wake the waiters of ``key``; raise on failure."""
        head, chunks = self._plan(body)
        if chunks:
            self._write_chunks(key, chunks, ttl)
        self.backend.publish(key, head, ttl, wake_key)

    def check_fits(self, body: bytes) -> None:
        """Raise ``ValueTooLargeError`` now if writing ``body`` would (chunking off)."""
        if len(body) > _ALWAYS_FITS:
            self._plan(body)

    def publish_many(
        self, bodies: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> None:
        """:meth:`publish` for several bodies, in one round trip per server when they fit in one
        item each (a large one is published on its own); raise the first failure."""
        small = {key: body for key, body in bodies.items() if len(body) <= _ALWAYS_FITS}
        for key, body in bodies.items():
            if key not in small:
                self.publish(key, body, ttl, wake_keys[key])
        failures = self.backend.publish_many(small, ttl, wake_keys)
        if failures:
            raise failures[0].error

    def _write_chunks(self, key: bytes, chunks: dict[bytes, bytes], ttl: float | None) -> None:
        failures = self.backend.set_many(chunks, ttl)
        if failures:
            self._forget_old([key])
            raise failures[0].error

    def _forget_old(self, keys: Sequence[bytes]) -> None:
        """After a failed write, try to delete what the keys held, so that an old value is not
        read as if the write had not happened."""
        for failure in self.backend.delete_many(keys):
            logger.debug("could not delete %d stale items: %s", len(failure.keys), failure.error)

    def write_many(
        self, bodies: Mapping[bytes, bytes], ttl: float | None
    ) -> tuple[set[bytes], list[Failure]]:
        """Store several bodies; return the keys not stored and the failures.

        Raises ``ValueTooLargeError`` before writing anything.
        """
        heads: Mapping[bytes, bytes] = bodies
        chunks: dict[bytes, bytes] = {}
        owner: dict[bytes, bytes] = {}
        large = [key for key, body in bodies.items() if len(body) > _ALWAYS_FITS]
        if large:
            heads = dict(bodies)
            for key in large:
                head, own = self._plan(bodies[key])
                heads[key] = head
                chunks.update(own)
                owner.update(dict.fromkeys(own, key))
        not_stored: set[bytes] = set()
        failures = self.backend.set_many(chunks, ttl) if chunks else []
        for failure in failures:
            not_stored.update(owner[chunk_key] for chunk_key in failure.keys)
        if not_stored:
            self._forget_old(list(not_stored))
            heads = {key: head for key, head in heads.items() if key not in not_stored}
        head_failures = self.backend.set_many(heads, ttl)
        for failure in head_failures:
            not_stored.update(failure.keys)
        return not_stored, failures + head_failures

    # -- reading -------------------------------------------------------------------------------

    def decode(self, item: bytes) -> Any:
        """The value of one item read from the backend: reads the chunks of a manifest.

        Raises ``Corrupt`` for an item or chunks that do not hold a value, and the backend's
        error when chunks cannot be read.
        """
        if item[:1] == b"#":
            manifest = read_manifest(item)
            keys = [
                self.keys.chunk_key(manifest.version, index) for index in range(manifest.pieces)
            ]
            found, failures = self.backend.get_many(keys)
            if failures:
                raise failures[0].error
            item = manifest.join([found.get(key) for key in keys])
        return decode_body(item, self.loads)

    def read_many(
        self, keys: list[bytes]
    ) -> tuple[dict[bytes, Any], list[Failure], list[tuple[bytes, str]]]:
        """The values under ``keys`` that could be read, the failures, and the corrupt keys
        (with the reason) that count as misses."""
        found, failures = self.backend.get_many(keys)
        values: dict[bytes, Any] = {}
        corrupt: list[tuple[bytes, str]] = []
        manifests: dict[bytes, Manifest] = {}
        loads = self.loads
        for key, item in found.items():
            try:
                if item[:1] != b"#":
                    values[key] = decode_body(item, loads)
                else:
                    manifests[key] = read_manifest(item)
            except Corrupt as exc:
                corrupt.append((key, str(exc)))
        if manifests:
            chunk_keys = [
                self.keys.chunk_key(m.version, index)
                for m in manifests.values()
                for index in range(m.pieces)
            ]
            chunks, chunk_failures = self.backend.get_many(chunk_keys)
            failures += chunk_failures
            failed = {k for failure in chunk_failures for k in failure.keys}
            for key, manifest in manifests.items():
                own = [self.keys.chunk_key(manifest.version, i) for i in range(manifest.pieces)]
                if failed.intersection(own):
                    continue  # counted with the failures
                try:
                    values[key] = decode_body(manifest.join([chunks.get(k) for k in own]), loads)
                except Corrupt as exc:
                    corrupt.append((key, str(exc)))
        return values, failures, corrupt
