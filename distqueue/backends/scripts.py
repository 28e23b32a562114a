"""distqueue's Lua scripts: their source, and the object that runs one on a Redis server.

Each script lives in ``lua/NAME.lua`` and declares the keys it touches at its top. When a script
is loaded, the definitions of ``lua/lib.lua`` it uses are put before it, so it stays one atomic
EVAL.

A script that changes state is *wrapped* so that it is safe to retry: its first argument is a
request id made by the client, and its last two keys are the queue's two reply hashes. The
wrapper looks the id up first; if the call ran already, it returns the reply it gave then and
changes nothing. Otherwise it runs the script and records the reply under the id. Replies are
kept at least ``REPLY_WINDOW`` seconds (server time), which bounds how long a client may go on
retrying one call.

This module does no I/O of its own except through the client it is given.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.exceptions

REPLY_WINDOW = 60.0
"""Seconds a script's reply stays known under its request id (at least; at most twice that)."""

_WRAPPER = """local request = table.remove(ARGV, 1)
local known, replies = recall(KEYS[#KEYS - 1], KEYS[#KEYS], request)
if known then
    return unpack_reply(known)
end
local reply = (function()
%s
end)()
if type(reply) == 'table' and reply.err then
    return reply  -- refused before any write: nothing to remember
end
redis.call('HSET', replies, request, pack_reply(reply))
return reply
"""


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text("utf-8")


@cache
def script_source(name: str, retry_safe: bool) -> str:
    """The text of script ``name`` as sent to the server: the definitions of lib.lua it uses
    (and what those use), then its body, wrapped when ``retry_safe``.

    Only what is used is included: Lua builds every local function anew on each run.
    """
    body = _lua(name)
    if retry_safe:
        body = _WRAPPER % body
    definitions = {
        match.group(1): block
        for block in re.split(r"\n(?=local )", _lua("lib.lua"))
        if (match := re.match(r"local (?:function )?(\w+)", block))
    }
    needed: list[str] = []
    pending = [body]
    while pending:
        text = pending.pop()
        for symbol, block in definitions.items():
            if symbol not in needed and re.search(rf"\b{symbol}\b", text):
                needed.append(symbol)
                pending.append(block)
    ordered = [block for symbol, block in definitions.items() if symbol in needed]
    return "\n".join([*ordered, body])


class RequestIds:
    """Request ids unique across processes and machines: a random prefix and a counter."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):x}"


def _resp(arg: bytes | str | int | float) -> bytes:
    """One argument of a command in the Redis protocol (RESP)."""
    data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(data), data)


class NotSent(Exception):
    """A connection failed before the command reached the server: it surely did not run."""

    def __init__(self, error: redis.exceptions.RedisError) -> None:
        super().__init__(str(error))
        self.error = error


class Script:
    """A Lua script run by EVALSHA with its keys bound; loaded again if the server forgot it
    (after a restart, or SCRIPT FLUSH).

    One call is one attempt: nothing here retries (the caller does, with the same request id).
    With a plain ``redis.Redis`` client the fixed part of the command (EVALSHA, the script's
    hash, its keys) is encoded once and each call writes only its own arguments: packing ten
    arguments anew cost more than the server spends running the script. A failure before the
    command was written raises :class:`NotSent`. Any other client (fakeredis, a subclass) goes
    through ``execute_command``.
    """

    __slots__ = ("_argc", "_client", "_execute", "_fast", "_packed", "_prefix", "source")

    def __init__(
        self, client: Any, name: str, keys: Sequence[str], *, retry_safe: bool = False
    ) -> None:
        self._client = client
        self._execute: Any = client.execute_command
        self.source = script_source(name, retry_safe)
        sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()
        self._prefix: tuple[str | int, ...] = ("EVALSHA", sha, len(keys), *keys)
        self._packed = b"".join(_resp(part) for part in self._prefix)
        self._argc = len(self._prefix)
        self._fast = type(client) is redis.Redis and _plain_resp2(client)

    def __call__(self, *args: Any) -> Any:
        try:
            if self._fast:
                return self._call_packed(args)
            return self._execute(*self._prefix, *args)
        except redis.exceptions.NoScriptError:
            self._client.script_load(self.source)
            if self._fast:
                return self._call_packed(args)
            return self._execute(*self._prefix, *args)

    def _call_packed(self, args: tuple[Any, ...]) -> Any:
        command = b"".join(
            [b"*%d\r\n" % (self._argc + len(args)), self._packed, *[_resp(a) for a in args]]
        )
        pool = self._client.connection_pool
        try:
            connection = pool.get_connection()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise NotSent(exc) from exc
        try:
            try:
                connection.send_packed_command([command])
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # A command cut short is never run: the server drops it with the connection.
                connection.disconnect()
                raise NotSent(exc) from exc
            try:
                return connection.read_response()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                connection.disconnect()
                raise
        finally:
            pool.release(connection)


def _plain_resp2(client: redis.Redis) -> bool:
    """Whether the client's connections are redis-py's own, speaking RESP2 without extras."""
    kwargs = client.connection_pool.connection_kwargs
    connection_class = client.connection_pool.connection_class
    return (
        connection_class
        in (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)
        and kwargs.get("protocol") in (None, 2, "2")
        and not kwargs.get("cache")
        and client.connection is None
    )
