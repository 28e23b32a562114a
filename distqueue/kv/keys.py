"""Storage keys that every server accepts, in namespaces that never overlap.

Every key the cache and the result store write has the form ``{namespace}:{kind}:{key}`` or,
when ``key`` is not safe as it is, ``{namespace}:{kind}#{digest}``::

    kind  holds                                   written by
    v     a value                                 Cache.set, add, set_many, incr, decr
    c     one chunk of a large value              any write of a value over the item limit
    f     a cached function's result              @cached
    g     a cached function's generation counter  @cached (cache_clear)
    l     a stampede lock                         @cached
    r     a task's result, or its pending marker  ResultStore
    n     a task's wake-up token (Redis only)     ResultStore

A key is used as it is when all its bytes are printable ASCII other than the space (``!`` to
``~``) and the storage key fits in memcached's 250 bytes; otherwise it is replaced by
``digest``, the URL-safe base64 of its 24-byte BLAKE2b hash.

A task's two keys (``r`` and ``n``) are written together in one ``MULTI``, which a Redis
Cluster runs only on keys of one slot, so they carry the task id as a hash tag:
``{namespace}:r:{{id}}`` and ``{namespace}:n:{{id}}`` (the braces are literal), or
``{namespace}:r#{{digest}}`` when the id is not safe as it is or holds a brace itself. (Before
this layout, they were ``{namespace}:r:{id}`` and ``{namespace}:n:{id}``.) Every other kind
stands alone: calls on several keys go to every slot concerned. Text keys are encoded as UTF-8
first (lone surrogates included), so ``"abc"`` and ``b"abc"`` are the same key. The namespace
may not contain ``:`` or ``#``, so two different (namespace, kind, key) never share a storage
key.

"""

from __future__ import annotations

import base64
import hashlib
import re

__all__ = ["DEFAULT_NAMESPACE", "MAX_KEY_LENGTH", "Keyspace"]

DEFAULT_NAMESPACE = "dq"
"""The namespace of a cache or result store that is given none."""

MAX_KEY_LENGTH = 250
"""memcached's limit on a key, in bytes."""

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")

# Bytes of a key that is safe as it is: printable ASCII except the space.
_SAFE_BYTES = bytes(range(0x21, 0x7F))


def _digest(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(hashlib.blake2b(raw, digest_size=24).digest())


class Keyspace:
    """The storage keys of one namespace."""

    def __init__(self, namespace: str) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                f"invalid namespace {namespace!r}: use 1 to 64 letters, digits and '_', '.', "
                "'-', '/'"
            )
        self.namespace = namespace
        self._plain: dict[str, bytes] = {}
        self._hashed: dict[str, bytes] = {}
        for kind in "vcfglrn":
            self._plain[kind] = f"{namespace}:{kind}:".encode("ascii")
            self._hashed[kind] = f"{namespace}:{kind}#".encode("ascii")
        self._value_prefix = self._plain["v"]
        self._value_room = MAX_KEY_LENGTH - len(self._value_prefix)

    def value_key(self, key: str | bytes) -> bytes:
        """The storage key of a value stored under the user's ``key``."""
        # The common case, a short printable ASCII str, is checked without encoding twice.
        if type(key) is str:
            if (
                key.isascii()
                and key.isprintable()
                and " " not in key
                and len(key) <= self._value_room
            ):
                return self._value_prefix + key.encode("ascii")
            return self._hashed["v"] + _digest(key.encode("utf-8", "surrogatepass"))
        return self.key("v", key)

    def key(self, kind: str, key: str | bytes) -> bytes:
        """The storage key of ``key`` for ``kind`` (one of the letters in the module docstring)."""
        if type(key) is str:
            raw = key.encode("utf-8", "surrogatepass")
        elif isinstance(key, (bytes, bytearray, memoryview)):
            raw = bytes(key)
        else:
            raise TypeError(f"a cache key must be a str or bytes, not {type(key).__name__}")
        prefix = self._plain[kind]
        if len(prefix) + len(raw) <= MAX_KEY_LENGTH and not raw.translate(None, _SAFE_BYTES):
            return prefix + raw
        return self._hashed[kind] + _digest(raw)

    def task_keys(self, task_id: str) -> tuple[bytes, bytes]:
        """The storage keys of a task's result (``r``) and of its wake-up token (``n``), in
        one Redis Cluster slot: the id (or its digest) is their hash tag."""
        raw = task_id.encode("utf-8", "surrogatepass")
        room = MAX_KEY_LENGTH - len(self._plain["r"]) - 2
        if (
            0 < len(raw) <= room
            and not raw.translate(None, _SAFE_BYTES)
            and b"{" not in raw
            and b"}" not in raw
        ):
            tag = b"{" + raw + b"}"
            return self._plain["r"] + tag, self._plain["n"] + tag
        tag = b"{" + _digest(raw) + b"}"
        return self._hashed["r"] + tag, self._hashed["n"] + tag

    def chunk_key(self, version: str, index: int) -> bytes:
        """The storage key of chunk ``index`` of the value written with ``version``."""
        return self._plain["c"] + f"{version}:{index}".encode("ascii")
