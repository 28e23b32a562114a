"""Values over a backend: serializing, compressing, chunking, and reading it all back.

:class:`ValueStore` is shared by :class:`~distqueue.cache.Cache` and
:class:`~distqueue.results.ResultStore`. It raises the backend's errors as they are; the two
classes above it apply their own rule for a failed server (a miss, or an error). The stored
format is described in :mod:`.frames`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BackendError, OutcomeUnknownError, ValueTooLargeError
from ..serializers import JSONSerializer, PickleSerializer, Serializer
from .base import KEEP_TTL, CasToken, Failure, KeepTTL, KVBackend, check_seconds, logger
from .frames import (
    MAX_PIECES,
    Corrupt,
    Manifest,
    decode_body,
    encode_body,
    new_manifest,
    read_manifest,
)
from .keys import Keyspace
from .steps import KVOp, call, drive
from .url import given_timeouts, open_backend

ITEM_OVERHEAD = 512
"""Bytes of an item's size limit kept for memcached's item header and the key."""

_ALWAYS_FITS = 1024 - ITEM_OVERHEAD  # memcached refuses an item size limit below 1 KiB

CHUNK_BATCH = 64
"""Chunks read in one request. Reading stops at the first request that misses one, so a
manifest whose chunks are not there costs one request, whatever it claims."""


CAS_TRIES = 100
"""Rounds of read and compare-and-set an append makes while other writers keep changing the
value, before it gives up."""


class Missing(enum.Enum):
    """The marker of a value that is not there (a miss, or a corrupt value)."""

    MISSING = 0


MISSING = Missing.MISSING


class ValueSteps:
    """Encode, write, read and decode values, as operations over a backend
    (:mod:`.steps`: each yields the backend calls it needs and does no I/O itself).

    Writing is in two steps, so that every error in the caller's data comes before anything
    is written: :meth:`encode` turns a value into its *body* (raising ``SerializationError``),
    then a write cuts a body too large for one item into chunks (raising
    ``ValueTooLargeError`` when chunking is off, or when it would take more than
    ``MAX_PIECES`` chunks) before it sends anything.

    No chunk outlives its value, with one exception: a write of a chunked value reads the
    item it replaces first and deletes that item's chunks after it; an ``add`` that finds the
    key taken, or a write that fails, deletes its own chunks; :meth:`delete` deletes the
    chunks with the value. The exception: a value that fits in one item written over a
    chunked one (a ``set`` does not read what it replaces, as that would cost every write a
    round trip); those chunks go when their TTL passes or the server evicts them. (So do
    those of a large value replaced by another writer between this write's look and its
    write, and those of a write whose caller was cancelled between its chunks and its item.)
    """

    def __init__(
        self,
        keys: Keyspace,
        serializer: Serializer,
        *,
        chunking: bool,
        compress_min_size: int | None,
        keeps_ttl: bool,
    ) -> None:
        self.keys = keys
        self.serializer = serializer
        self.chunking = chunking
        self.compress_min_size = compress_min_size
        self.keeps_ttl = keeps_ttl
        self._dumps = serializer.dumps
        self.loads = serializer.loads
        # str and bytes skip the built-in serializers (same values back, no code run); a
        # serializer of the user's own sees every value but counters.
        self._native_text = type(serializer) in (JSONSerializer, PickleSerializer)

    # -- writing -------------------------------------------------------------------------------

    def encode(self, value: object) -> bytes:
        """The body of ``value``; raises ``SerializationError`` from the serializer."""
        return encode_body(value, self._dumps, self.compress_min_size, self._native_text)

    def plan(self, body: bytes) -> KVOp[tuple[bytes, dict[bytes, bytes]]]:
        """The item for a body and the chunks to write first (none when the body fits)."""
        if len(body) <= _ALWAYS_FITS:
            return body, {}
        limit: int | None = yield call("item_size_limit")
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
        if -(-len(body) // room) > MAX_PIECES:
            raise ValueTooLargeError(
                f"the value takes {len(body)} bytes (serialized), more than {MAX_PIECES} chunks "
                f"of the {room} bytes that fit in one item of the server; nothing was written",
                size=len(body),
                limit=room * MAX_PIECES,
            )
        manifest, pieces = new_manifest(body, room)
        chunks = {
            self.keys.chunk_key(manifest.version, index): piece
            for index, piece in enumerate(pieces)
        }
        return manifest.encode(), chunks

    def _fits(self, body: bytes) -> KVOp[bool]:
        """Whether ``body`` is stored in one item, without chunks."""
        if len(body) <= _ALWAYS_FITS:
            return True
        limit: int | None = yield call("item_size_limit")
        return limit is None or len(body) <= limit - ITEM_OVERHEAD

    def write(self, key: bytes, body: bytes, ttl: float | None) -> KVOp[None]:
        """Store one body (chunks first, then its own item); raise on failure."""
        head, chunks = yield from self.plan(body)
        if not chunks:
            yield call("set", key, head, ttl)
            return
        replaced = yield from self._manifest_under(key)
        yield from self._write_chunks(key, chunks, ttl)
        try:
            yield call("set", key, head, ttl)
        except Exception:
            yield from self._drop(list(chunks))
            raise
        if replaced is not None:
            yield from self._drop(self.chunk_keys(replaced))

    def add(self, key: bytes, body: bytes, ttl: float | None) -> KVOp[bool]:
        """Store one body only if ``key`` holds nothing; raise on failure."""
        head, chunks = yield from self.plan(body)
        if not chunks:
            added: bool = yield call("add", key, head, ttl)
            return added
        yield from self._write_chunks(key, chunks, ttl)
        try:
            stored: bool = yield call("add", key, head, ttl)
        except Exception:
            yield from self._drop(list(chunks))
            raise
        if not stored:  # the key holds another value: these chunks would belong to nothing
            yield from self._drop(list(chunks))
        return stored

    def replace(self, key: bytes, body: bytes, ttl: float | None) -> KVOp[bool]:
        """Store one body only if ``key`` holds a value; raise on failure."""
        head, chunks = yield from self.plan(body)
        if not chunks:
            replaced_one: bool = yield call("replace", key, head, ttl)
            return replaced_one
        replaced = yield from self._manifest_under(key)
        yield from self._write_chunks(key, chunks, ttl)
        try:
            stored: bool = yield call("replace", key, head, ttl)
        except Exception:
            yield from self._drop(list(chunks))
            raise
        if not stored:  # nothing to replace: these chunks would belong to nothing
            yield from self._drop(list(chunks))
        elif replaced is not None:
            yield from self._drop(self.chunk_keys(replaced))
        return stored

    def gets(self, key: bytes) -> KVOp[tuple[Any, CasToken | None]]:
        """The value under ``key`` and a token for :meth:`cas`; ``(MISSING, None)`` if there
        is none. Raises ``Corrupt`` and the backend's errors."""
        item, stamp = yield call("gets", key)
        if item is None:
            return MISSING, None
        replaces: tuple[bytes, ...] = ()
        if item[:1] == b"#":
            manifest = yield from self.manifest(item)
            replaces = tuple(self.chunk_keys(manifest))
            body = yield from self._read_chunks(manifest)
        else:
            body = item
        return decode_body(body, self.loads), CasToken(key, stamp, replaces)

    def cas(self, body: bytes, ttl: float | KeepTTL | None, token: CasToken) -> KVOp[bool]:
        """Store one body only if the key still holds what was read with ``token``; raise
        on failure (``OutcomeUnknownError`` when it may have been stored).

        ``KEEP_TTL`` keeps the item's TTL for a body that fits in one item, on a backend that
        can; the caller falls back on a number otherwise (see :meth:`append`).
        """
        key = token.key
        head, chunks = yield from self.plan(body)
        if chunks and ttl is KEEP_TTL:
            raise ValueError("a chunked value needs a TTL of its own")
        stored: bool
        if not chunks:
            stored = yield call("cas", key, head, ttl, token.stamp)
        else:
            assert not isinstance(ttl, KeepTTL)
            yield from self._write_chunks(key, chunks, ttl)
            try:
                stored = yield call("cas", key, head, ttl, token.stamp)
            except OutcomeUnknownError:
                raise  # these chunks may be the value's now: they go with their TTL
            except Exception:
                yield from self._drop(list(chunks))
                raise
            if not stored:
                yield from self._drop(list(chunks))
        if stored and token.replaces:
            yield from self._drop(list(token.replaces))
        return stored

    def append(self, key: bytes, data: bytes, prepend: bool, ttl: float | None) -> KVOp[bool]:
        """Add ``data`` at the end (or start) of the bytes value under ``key``; ``False`` if
        there is none. Raises ``TypeError`` (nothing changed) if the value is not a ``bytes``,
        ``Corrupt`` if it is unusable, and the backend's errors.

        A plain bytes item is changed by the backend in one step, keeping its TTL. Any other
        (compressed, chunked, through a serializer of one's own, or on memcached) is read,
        and written back with :meth:`cas`, again until no other writer came in between: its
        TTL is kept where the backend can and the result fits in one item, else it is
        ``ttl``.
        """
        done: bool | None = yield call("append", key, data, prepend)
        if done is not None:
            return done
        for _ in range(CAS_TRIES):
            value, token = yield from self.gets(key)
            if token is None:
                return False
            if type(value) is not bytes:
                raise TypeError(
                    f"{'prepend' if prepend else 'append'} needs a bytes value, and the value "
                    f"stored is a {type(value).__name__}; nothing was changed"
                )
            body = self.encode(data + value if prepend else value + data)
            keep = self.keeps_ttl and (yield from self._fits(body))
            if (yield from self.cas(body, KEEP_TTL if keep else ttl, token)):
                return True
        raise BackendError(
            f"the value under {key.decode('ascii')!r} changed under each of {CAS_TRIES} tries to "
            "add to it; nothing was added"
        )

    def publish(self, key: bytes, body: bytes, ttl: float | None, wake_key: bytes) -> KVOp[None]:
        """Store one body and wake the waiters of ``key``; raise on failure."""
        head, chunks = yield from self.plan(body)
        if not chunks:
            yield call("publish", key, head, ttl, wake_key)
            return
        replaced = yield from self._manifest_under(key)
        yield from self._write_chunks(key, chunks, ttl)
        try:
            yield call("publish", key, head, ttl, wake_key)
        except Exception:
            yield from self._drop(list(chunks))
            raise
        if replaced is not None:
            yield from self._drop(self.chunk_keys(replaced))

    def delete(self, key: bytes) -> KVOp[bool]:
        """Remove the value under ``key`` and its chunks; ``True`` if there was one. Raises
        the backend's error (the value is then maybe deleted)."""
        replaced = yield from self._manifest_under(key)
        deleted: bool = yield call("delete", key)
        if replaced is not None:
            yield from self._drop(self.chunk_keys(replaced))
        return deleted

    def delete_many(
        self, keys: Sequence[bytes], others: Sequence[bytes] = ()
    ) -> KVOp[list[Failure]]:
        """Remove the values under ``keys`` with their chunks, and the items under ``others``
        (which hold no values); return the failed servers' keys."""
        found, failures = yield call("get_many", keys)
        chunk_keys: list[bytes] = []
        for item in found.values():
            if item[:1] == b"#":
                try:
                    manifest = yield from self.manifest(item)
                except Corrupt:
                    continue
                chunk_keys += self.chunk_keys(manifest)
        failures += yield call("delete_many", [*keys, *others])
        if chunk_keys:
            yield from self._drop(chunk_keys)
        result: list[Failure] = failures
        return result

    def _manifest_under(self, key: bytes) -> KVOp[Manifest | None]:
        """The manifest ``key`` holds, if it holds a sound one (read before replacing it)."""
        item: bytes | None = yield call("get", key)
        if item is None or item[:1] != b"#":
            return None
        try:
            return (yield from self.manifest(item))
        except Corrupt:
            return None

    def _drop(self, chunk_keys: list[bytes]) -> KVOp[None]:
        """Delete chunks that belong to no value; a failure only leaves them to their TTL."""
        failures: list[Failure] = yield call("delete_many", chunk_keys)
        for failure in failures:
            logger.debug("could not delete %d unused chunks: %s", len(failure.keys), failure.error)

    def check_fits(self, body: bytes) -> KVOp[None]:
        """Raise ``ValueTooLargeError`` now if writing ``body`` would (chunking off)."""
        if len(body) > _ALWAYS_FITS:
            yield from self.plan(body)

    def publish_many(
        self, bodies: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> KVOp[None]:
        """:meth:`publish` for several bodies, in one round trip per server when they fit in one
        item each (a large one is published on its own); raise the first failure."""
        small = {key: body for key, body in bodies.items() if len(body) <= _ALWAYS_FITS}
        for key, body in bodies.items():
            if key not in small:
                yield from self.publish(key, body, ttl, wake_keys[key])
        failures: list[Failure] = yield call("publish_many", small, ttl, wake_keys)
        if failures:
            raise failures[0].error

    def _write_chunks(
        self, key: bytes, chunks: dict[bytes, bytes], ttl: float | None
    ) -> KVOp[None]:
        failures: list[Failure] = yield call("set_many", chunks, ttl)
        if failures:
            yield from self._forget_old([key])
            yield from self._drop(list(chunks))
            raise failures[0].error

    def _forget_old(self, keys: Sequence[bytes]) -> KVOp[None]:
        """After a failed write, try to delete what the keys held, so that an old value is not
        read as if the write had not happened."""
        failures: list[Failure] = yield call("delete_many", keys)
        for failure in failures:
            logger.debug("could not delete %d stale items: %s", len(failure.keys), failure.error)

    def write_many(
        self, bodies: Mapping[bytes, bytes], ttl: float | None
    ) -> KVOp[tuple[set[bytes], list[Failure]]]:
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
                head, own = yield from self.plan(bodies[key])
                heads[key] = head
                chunks.update(own)
                owner.update(dict.fromkeys(own, key))
        not_stored: set[bytes] = set()
        failures: list[Failure] = []
        replaced: dict[bytes, Manifest] = {}
        if chunks:  # read what the chunked values replace, to delete its chunks after
            old, failures = yield call("get_many", list(set(owner.values())))
            for failure in failures:
                not_stored.update(failure.keys)  # their servers failed: not written
            for key, item in old.items():
                if item[:1] == b"#":
                    with contextlib.suppress(Corrupt):  # a lie names no chunks to delete
                        replaced[key] = yield from self.manifest(item)
            chunks = {k: v for k, v in chunks.items() if owner[k] not in not_stored}
            chunk_failures: list[Failure] = (yield call("set_many", chunks, ttl)) if chunks else []
            failed_chunks = [k for failure in chunk_failures for k in failure.keys]
            not_stored.update(owner[chunk_key] for chunk_key in failed_chunks)
            failures += chunk_failures
        if not_stored:
            yield from self._forget_old(list(not_stored))
            yield from self._drop([k for k, key in owner.items() if key in not_stored])
            heads = {key: head for key, head in heads.items() if key not in not_stored}
        head_failures: list[Failure] = yield call("set_many", heads, ttl)
        for failure in head_failures:
            not_stored.update(failure.keys)
        stale = [
            k for key, m in replaced.items() if key not in not_stored for k in self.chunk_keys(m)
        ]
        if stale:
            yield from self._drop(stale)
        return not_stored, failures + head_failures

    # -- reading -------------------------------------------------------------------------------

    def decode(self, item: bytes) -> KVOp[Any]:
        """The value of one item read from the backend: reads the chunks of a manifest.

        Raises ``Corrupt`` for an item or chunks that do not hold a value, and the backend's
        error when chunks cannot be read.
        """
        if item[:1] == b"#":
            manifest = yield from self.manifest(item)
            item = yield from self._read_chunks(manifest)
        return decode_body(item, self.loads)

    def manifest(self, item: bytes) -> KVOp[Manifest]:
        """The manifest an item starting with ``#`` holds, checked against the rules of
        :mod:`.frames` and the servers' memory before any chunk is read; ``Corrupt`` if it
        does not fit them (a lie costs no request)."""
        manifest = read_manifest(item)
        yield call("item_size_limit")  # asks the servers once, with their memory
        memory: int | None = yield call("memory_limit")
        if memory is not None and manifest.size > memory:
            raise Corrupt(
                f"manifest claims {manifest.size} bytes, more than the servers hold ({memory})"
            )
        return manifest

    def chunk_keys(self, manifest: Manifest) -> list[bytes]:
        """The keys of a manifest's chunks, in order."""
        chunk_key, version = self.keys.chunk_key, manifest.version
        return [chunk_key(version, index) for index in range(manifest.pieces)]

    def _read_chunks(self, manifest: Manifest) -> KVOp[bytes]:
        """The body a manifest's chunks hold, read ``CHUNK_BATCH`` at a time; ``Corrupt`` at
        the first missing chunk, or once they hold more than the manifest says."""
        keys = self.chunk_keys(manifest)
        chunks: list[bytes | None] = []
        read = 0
        for start in range(0, len(keys), CHUNK_BATCH):
            batch = keys[start : start + CHUNK_BATCH]
            found, failures = yield call("get_many", batch)
            if failures:
                raise failures[0].error
            if len(found) < len(batch):
                missing = len(batch) - len(found)
                raise Corrupt(
                    f"chunk missing ({missing} of {len(batch)} read, {manifest.pieces} in all)"
                )
            for key in batch:
                chunk = found[key]
                read += len(chunk)
                chunks.append(chunk)
            if read > manifest.size:
                raise Corrupt(f"chunks hold more than the {manifest.size} bytes the manifest says")
        return manifest.join(chunks)

    def read_many(
        self, keys: list[bytes]
    ) -> KVOp[tuple[dict[bytes, Any], list[Failure], list[tuple[bytes, str]]]]:
        """The values under ``keys`` that could be read, the failures, and the corrupt keys
        (with the reason) that count as misses."""
        found, failures = yield call("get_many", keys)
        values: dict[bytes, Any] = {}
        corrupt: list[tuple[bytes, str]] = []
        manifests: dict[bytes, Manifest] = {}
        loads = self.loads
        for key, item in found.items():
            try:
                if item[:1] != b"#":
                    values[key] = decode_body(item, loads)
                else:
                    manifests[key] = yield from self.manifest(item)
            except Corrupt as exc:
                corrupt.append((key, str(exc)))
        if sum(m.pieces for m in manifests.values()) > CHUNK_BATCH:
            for key, manifest in manifests.items():  # a batch or more each, stopping early
                try:
                    body = yield from self._read_chunks(manifest)
                    values[key] = decode_body(body, loads)
                except Corrupt as exc:
                    corrupt.append((key, str(exc)))
                except BackendError as exc:
                    failures.append(Failure("chunks", [key], exc))
        elif manifests:  # all their chunks in one request
            own = {key: self.chunk_keys(manifest) for key, manifest in manifests.items()}
            chunks, chunk_failures = yield call("get_many", [k for ks in own.values() for k in ks])
            failures += chunk_failures
            failed = {k for failure in chunk_failures for k in failure.keys}
            for key, manifest in manifests.items():
                if failed.intersection(own[key]):
                    continue  # counted with the failures
                try:
                    body = manifest.join([chunks.get(k) for k in own[key]])
                    values[key] = decode_body(body, loads)
                except Corrupt as exc:
                    corrupt.append((key, str(exc)))
        return values, failures, corrupt


class ValueStore:
    """:class:`ValueSteps` performed on one blocking backend (``backend``), for the callers
    that block (:class:`~distqueue.results.ResultStore`); ``steps`` are the operations
    themselves, which the cache drives on its own. Each method is the operation of the same
    name, with its errors."""

    def __init__(self, backend: KVBackend, steps: ValueSteps) -> None:
        self.backend = backend
        self.steps = steps
        self.keys = steps.keys
        self.encode = steps.encode

    def decode(self, item: bytes) -> Any:
        return drive(self.steps.decode(item), self.backend)

    def write(self, key: bytes, body: bytes, ttl: float | None) -> None:
        drive(self.steps.write(key, body, ttl), self.backend)

    def publish(self, key: bytes, body: bytes, ttl: float | None, wake_key: bytes) -> None:
        drive(self.steps.publish(key, body, ttl, wake_key), self.backend)

    def publish_many(
        self, bodies: Mapping[bytes, bytes], ttl: float | None, wake_keys: Mapping[bytes, bytes]
    ) -> None:
        drive(self.steps.publish_many(bodies, ttl, wake_keys), self.backend)

    def check_fits(self, body: bytes) -> None:
        drive(self.steps.check_fits(body), self.backend)

    def delete(self, key: bytes) -> bool:
        return drive(self.steps.delete(key), self.backend)

    def delete_many(self, keys: Sequence[bytes], others: Sequence[bytes] = ()) -> list[Failure]:
        return drive(self.steps.delete_many(keys, others), self.backend)


def open_value_steps(
    url: str,
    *,
    namespace: str,
    serializer: Serializer,
    chunking: bool,
    compress_min_size: int | None,
    connect_timeout: object,
    timeout: object,
    dead_retry: object,
    blocking: bool = False,
    asyncio: bool = False,
) -> tuple[ValueSteps, Any]:
    """The value operations in ``namespace`` and the backend ``url`` names (see
    :func:`.url.open_backend`; with ``asyncio``, the asyncio one, which only Redis has).
    Raises ``ValueError`` or ``TypeError`` for the first argument that is wrong: the
    namespace, the timeouts (``DEFAULT``: from the URL, else the defaults), ``dead_retry``,
    then the URL."""
    keys = Keyspace(namespace)
    backend = open_backend(
        url,
        namespace=namespace,
        timeouts=given_timeouts(connect_timeout, timeout),
        dead_retry=check_seconds(dead_retry, "dead_retry"),
        blocking=blocking,
        asyncio=asyncio,
    )
    steps = ValueSteps(
        keys,
        serializer,
        chunking=bool(chunking),
        compress_min_size=compress_min_size,
        keeps_ttl=backend.keeps_ttl,
    )
    return steps, backend


def open_values(
    url: str,
    *,
    namespace: str,
    serializer: Serializer,
    chunking: bool,
    compress_min_size: int | None,
    connect_timeout: object,
    timeout: object,
    dead_retry: object,
    blocking: bool = False,
) -> ValueStore:
    """A :class:`ValueStore` over the blocking backend ``url`` names; the arguments and errors
    are those of :func:`open_value_steps`."""
    steps, backend = open_value_steps(
        url,
        namespace=namespace,
        serializer=serializer,
        chunking=chunking,
        compress_min_size=compress_min_size,
        connect_timeout=connect_timeout,
        timeout=timeout,
        dead_retry=dead_retry,
        blocking=blocking,
    )
    return ValueStore(backend, steps)
