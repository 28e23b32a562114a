"""The bytes stored for a value: one item, or a manifest and its chunks.

The first byte of a stored item says what it holds::

    0-9   a counter: the integer in ASCII digits, so that memcached's and Redis's incr/decr work
          on it (memcached may pad it with trailing spaces after a decr)
    =     the serializer's payload
    s     a str, as UTF-8 (lone surrogates kept)
    b     a bytes, as it is
    z     one of the three above, compressed with zlib
    #     a manifest: the value is in chunks (below)
    ~     a task's pending marker (ResultStore)

A non-negative ``int`` up to ``2**63 - 1`` is stored as a counter, whatever the serializer. With
the built-in serializers (``native_text=True``) a ``str`` or ``bytes`` (exactly those types) is
stored as it is, which is faster to read and write and keeps bytes from growing by a third in
base64; with any other serializer every value but a counter goes through it. A body of at
least ``compress_min_size`` bytes is compressed when that saves at least a tenth of it.

Reading never runs code unless the serializer does: the ``s``, ``b``, counter and manifest
formats are decoded without it.

Chunks
------
A body (everything above but a manifest) larger than what fits in one item is cut into chunks
stored under ``{namespace}:c:{version}:{index}``, and the value's own key holds the manifest::

    "#" version (16 bytes) chunk count (4 bytes) body size (8 bytes) BLAKE2b-128 of the body

``version`` is random for every write, so the chunks of two writes of the same key never mix:
a reader that got one write's manifest reads that write's chunks, or misses some of them.
Reassembled chunks that are missing, of the wrong total size or with another checksum make the
value a miss, never wrong data.

Every chunk but the last holds the same number of bytes, at least ``MIN_CHUNK`` (memcached's
smallest item limit, less the room kept for the key) and at most what fits in one item; a
value takes at most ``MAX_PIECES`` chunks (a larger one is ``ValueTooLargeError``). A manifest
whose count and size do not fit those rules, or the servers' limits, is corrupt: it is a miss
before any chunk is read (see ``ValueStore.manifest``).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, cast

__all__ = [
    "COUNTER_MAX",
    "MAX_CHUNK",
    "MAX_PIECES",
    "MIN_CHUNK",
    "PENDING",
    "Corrupt",
    "Manifest",
    "decode_body",
    "encode_body",
    "new_manifest",
    "read_manifest",
]

COUNTER_MAX = 2**63 - 1
"""The largest counter: Redis counts in signed 64 bits."""

PENDING = b"~"
"""The whole item that marks a task as pending."""

MAX_PIECES = 2**16
"""The most chunks a value is cut into (64 GiB in chunks of memcached's default 1 MiB)."""

MIN_CHUNK = 512
"""The fewest bytes in a chunk other than the last."""

MAX_CHUNK = 1024 * 1024 * 1024
"""The most bytes in one chunk (memcached's largest item; Redis chunks only above 512 MiB)."""

_MANIFEST = struct.Struct(">16sIQ16s")
_COMPRESS_LEVEL = 1  # fast; large cached values are usually text or JSON that compresses well


class Corrupt(Exception):
    """A stored item cannot be turned back into a value (internal: counted as a miss)."""


def encode_body(
    value: object,
    dumps: Callable[[object], bytes],
    compress_min_size: int | None,
    native_text: bool = True,
) -> bytes:
    """The item for ``value``: a counter, or the framed (maybe compressed) payload.

    Raises whatever ``dumps`` raises (``SerializationError``).
    """
    kind = type(value)
    if kind is int and 0 <= cast(int, value) <= COUNTER_MAX:
        return int.__repr__(cast(int, value)).encode("ascii")
    body: bytes
    if native_text and kind is str:
        body = b"s" + cast(str, value).encode("utf-8", "surrogatepass")
    elif native_text and kind is bytes:
        body = b"b" + cast(bytes, value)
    else:
        body = b"=" + dumps(value)
    if compress_min_size is not None and len(body) >= compress_min_size:
        packed = zlib.compress(body, _COMPRESS_LEVEL)
        if len(packed) < len(body) - len(body) // 10:
            return b"z" + packed
    return body


def decode_body(body: bytes, loads: Callable[[bytes], Any]) -> Any:
    """The value an item (not a manifest) holds; ``Corrupt`` if it holds none."""
    first = body[:1]
    try:
        if first == b"=":
            return loads(body[1:])
        if first == b"s":
            return body[1:].decode("utf-8", "surrogatepass")
        if first == b"b":
            return body[1:]
        if first == b"z":
            inner = zlib.decompress(body[1:])
            if inner[:1] in (b"=", b"s", b"b"):
                return decode_body(inner, loads)
            raise Corrupt(f"compressed item holds format {inner[:1]!r}")
    except (ValueError, zlib.error) as exc:  # DeserializationError, UnicodeDecodeError
        raise Corrupt(f"undecodable payload: {exc}") from exc
    if first.isdigit():
        digits = body.rstrip(b" ")
        if digits.isdigit():
            return int(digits)
    raise Corrupt(f"unknown item format {first!r}" if body else "empty item")


def parse_counter(body: bytes) -> int | None:
    """The counter an item holds, or ``None`` if it holds something else."""
    digits = body.rstrip(b" ")
    if digits.isdigit() and digits.isascii():
        return int(digits)
    return None


class Manifest(NamedTuple):
    """Where the chunks of one write of a large value are, and how to check them."""

    version: str  # 32 hex digits
    pieces: int
    size: int
    checksum: bytes

    def encode(self) -> bytes:
        return b"#" + _MANIFEST.pack(
            bytes.fromhex(self.version), self.pieces, self.size, self.checksum
        )

    def join(self, chunks: list[bytes | None]) -> bytes:
        """The body the chunks hold; ``Corrupt`` if one is missing or they do not check out."""
        if any(chunk is None for chunk in chunks):
            raise Corrupt(f"chunk missing ({sum(c is None for c in chunks)} of {self.pieces})")
        body = b"".join(chunks)  # type: ignore[arg-type]
        if len(body) != self.size:
            raise Corrupt(f"chunks hold {len(body)} bytes, the manifest says {self.size}")
        if hashlib.blake2b(body, digest_size=16).digest() != self.checksum:
            raise Corrupt("chunk checksum mismatch")
        if body[:1] == b"#":
            raise Corrupt("chunks hold a manifest")
        return body


def new_manifest(body: bytes, chunk_size: int) -> tuple[Manifest, list[bytes]]:
    """A fresh manifest for ``body`` cut into chunks of at most ``chunk_size`` bytes."""
    chunks = [body[start : start + chunk_size] for start in range(0, len(body), chunk_size)]
    checksum = hashlib.blake2b(body, digest_size=16).digest()
    return Manifest(os.urandom(16).hex(), len(chunks), len(body), checksum), chunks


def read_manifest(item: bytes) -> Manifest:
    """The manifest an item starting with ``#`` holds; ``Corrupt`` if it is malformed."""
    try:
        version, pieces, size, checksum = _MANIFEST.unpack(item[1:])
    except struct.error:
        raise Corrupt("malformed manifest") from None
    # A body is chunked only when it does not fit in one item: two chunks at least.
    if not 2 <= pieces <= MAX_PIECES:
        raise Corrupt(f"manifest claims {pieces} chunks (at most {MAX_PIECES}, at least 2)")
    if not (pieces - 1) * MIN_CHUNK < size <= pieces * MAX_CHUNK:
        raise Corrupt(f"manifest claims {size} bytes in {pieces} chunks")
    return Manifest(version.hex(), pieces, size, checksum)
