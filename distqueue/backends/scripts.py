"""distqueue's Lua scripts: their source, and the object that runs one on a Redis server.

Each script lives in ``lua/NAME.lua`` and declares the keys it touches at its top. When a script
is loaded, the definitions of ``lua/lib.lua`` it uses are put before it, so it stays one atomic
EVAL.

Each script's first line is a shebang, ``#!lua`` with the flags Redis should enforce (none of
ours is ``no-writes``: every script writes, if only a wake-up token or a remembered reply). With
a shebang, Redis 7 checks a script before it runs rather than at its first write: a replica
refuses it outright (``READONLY``), and a Cluster node refuses one whose keys are not all in one
of its own slots. A server at its ``maxmemory`` (with ``noeviction``) refuses a script unless it
has ``flags=allow-oom``: every script has it but those that add items (the puts, and requeueing
dead letters), so that consumers can still drain a full server, ack, and delete. A server
that does not know shebangs (Redis before 7.0, fakeredis) fails to compile it; the script is
then sent without its first line, once per :class:`Script`.

A script that changes state is *wrapped* so that it is safe to retry: its last key is a key
named after a request id the client made, in the queue's hash slot. The wrapper reads that key
first; if the call ran already, it returns the reply it gave then and changes nothing.
Otherwise it runs the script and keeps the reply there for ``REPLY_WINDOW`` seconds (server
time, by the key's TTL), which bounds how long a client may go on retrying one call. The key
before it names the reply of an earlier call that its client has received, which the wrapper
deletes: a reply (a get's holds its items) is kept only until its client has it, not for the
whole window.

On Redis 7 every script, plain and wrapped, is also a function of one library of Redis
Functions (:func:`function_library`), where lib.lua's definitions are made once, when it is
loaded, instead of at every run; calls use FCALL, and EVALSHA on servers without functions.

This module does no I/O of its own except through the client it is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
from collections.abc import Callable, Generator, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.cluster
import redis.crc
import redis.exceptions
import redis.sentinel

REPLY_WINDOW = 60.0
"""Seconds a script's reply stays known under its request id."""

_WRAPPER = (
    """local known = redis.call('GET', KEYS[#KEYS])
if known then
    -- a write, so that a WAIT after this call confirms the first one's changes too
    redis.call('PEXPIRE', KEYS[#KEYS], """
    + str(int(REPLY_WINDOW * 1000))
    + """)
    return unpack_reply(known)
end
-- the reply of an earlier call, which its client has received: no longer worth keeping
redis.call('DEL', KEYS[#KEYS - 1])
local reply = (function()
%s
end)()
if type(reply) == 'table' and reply.err then
    return reply  -- refused before any write: nothing to remember
end
redis.call('SET', KEYS[#KEYS], pack_reply(reply), 'PX', """
    + str(int(REPLY_WINDOW * 1000))
    + """)
return reply
"""
)


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua").joinpath(name).read_text("utf-8")


@cache
def script_source(name: str, retry_safe: bool) -> str:
    """The text of script ``name`` as sent to the server: its shebang line, the definitions of
    lib.lua it uses (and what those use), then its body, wrapped when ``retry_safe``.

    Only what is used is included: Lua builds every local function anew on each run.
    ``ValueError`` if the script does not start with a ``#!lua`` line.
    """
    shebang, _, body = _lua(name).partition("\n")
    _check_shebang(name, shebang)
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
    return "\n".join([shebang, *ordered, body])


_MSGPACK_LOOKUP = "local msgpack = rawget(_G, 'cmsgpack')"

# Each function of the library: the script's body as a closure taking KEYS and ARGV; what a
# script run once set up anew (the clock, the server's MessagePack library, which a library
# may not look up while it loads) is set up at every call.
_REGISTER = """
local function register(name, flags, body)
    redis.register_function{
        function_name = '%s' .. name,
        flags = flags,
        callback = function(keys, args)
            clock_ms = nil
            if msgpack == nil then
                msgpack = rawget(_G, 'cmsgpack') or false
            end
            return body(keys, args)
        end,
    }
end
"""


@cache
def function_library() -> tuple[str, str]:
    """The library of Redis Functions (Redis 7) that holds every script of ``lua/``, plain and
    wrapped (see :func:`function_name`), with lib.lua's definitions made once, when the library
    is loaded, rather than at each call; and the prefix of its functions' names.

    Its name and its functions' names carry a hash of its text, so that versions of distqueue
    that differ in their scripts can share a server.
    """
    lib = _lua("lib.lua")
    if _MSGPACK_LOOKUP not in lib:
        raise ValueError("lua/lib.lua must look up cmsgpack in one line: " + _MSGPACK_LOOKUP)
    lib = lib.replace(_MSGPACK_LOOKUP, "local msgpack = nil  -- looked up at a call")
    parts = [lib, _REGISTER]
    folder = resources.files(__package__).joinpath("lua")
    for file in sorted(entry.name for entry in folder.iterdir()):
        if not file.endswith(".lua") or file == "lib.lua":
            continue
        shebang, _, body = _lua(file).partition("\n")
        _check_shebang(file, shebang)
        flags = ", ".join(f"'{flag}'" for flag in shebang.partition("flags=")[2].split(",") if flag)
        for retry_safe in (False, True):
            text = _WRAPPER % body if retry_safe else body
            parts.append(
                f"register('{_function_suffix(file, retry_safe)}', {{{flags}}},"
                f" function(KEYS, ARGV)\n{text}\nend)"
            )
    text = "\n".join(parts)
    tag = sha_of(text)[:16]
    prefix = f"distqueue_{tag}_"
    return f"#!lua name=distqueue_{tag}\n" + text.replace(_REGISTER, _REGISTER % prefix, 1), prefix


def _function_suffix(file: str, retry_safe: bool) -> str:
    return file.removesuffix(".lua") + ("_safe" if retry_safe else "")


def function_name(file: str, retry_safe: bool) -> str:
    """The name that FCALL knows script ``file`` by in :func:`function_library`."""
    return function_library()[1] + _function_suffix(file, retry_safe)


def _check_shebang(name: str, shebang: str) -> None:
    if not re.fullmatch(r"#!lua( flags=[a-z-]+(,[a-z-]+)*)?", shebang):
        raise ValueError(f"lua/{name} must start with a '#!lua [flags=...]' line, not {shebang!r}")


def sha_of(source: str) -> str:
    """The name EVALSHA knows a script's text by."""
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


class RequestIds:
    """Request ids unique across processes and machines: a random prefix and a counter. A
    process made by ``fork`` takes a prefix of its own at its first id (its parent's would
    repeat the parent's ids, and the server would take a new call for a retry of an old one
    and return that one's reply)."""

    __slots__ = ("_count", "_pid", "_prefix")

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._start()
        return f"{self._prefix}{next(self._count):x}"


_pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:
    # hiredis's encoder in C packs a whole command faster than ours packs the arguments alone
    # (bench/pack.py)
    from hiredis import pack_command as _pack_command
except ImportError:  # depends on what is installed
    _pack_command = None


def _resp(arg: bytes | str | int | float) -> bytes:
    """One argument of a command in the Redis protocol (RESP)."""
    data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _without_shebang(source: str) -> str:
    # An empty first line keeps Lua's line numbers in error messages the same.
    return "\n" + source.partition("\n")[2]


@cache
def _script_sha(name: str, retry_safe: bool, shebang: bool) -> str:
    source = script_source(name, retry_safe)
    return sha_of(source if shebang else _without_shebang(source))


class ServerTraits:
    """What the servers behind one client turned out not to support, learned from the first
    call that met it, so that later calls of every script bound to that client skip it:
    ``functions`` (FCALL; false on a server before Redis 7, an emulator, or for a user not
    allowed them) and ``shebangs`` (the ``#!lua`` line of a script's text, which servers
    before Redis 7 cannot compile)."""

    __slots__ = ("functions", "shebangs")

    def __init__(self) -> None:
        self.functions = True
        self.shebangs = True


class LoadLibrary:
    """A step of :meth:`ScriptPlan.after_refusal`: load :func:`function_library` on the
    server that refused the FCALL (the master of the keys), then go on."""


LOAD_LIBRARY = LoadLibrary()

Head = tuple[Any, ...]
"""The start of a script call: the command (FCALL, EVALSHA or EVAL), the function's name, the
hash or the text, the key count and the keys. The call's own arguments follow it."""


class ScriptPlan:
    """How to call one script with its keys bound, with no I/O: the command to try first
    (:attr:`head`) and, when the server refuses it, the attempts that follow
    (:meth:`after_refusal`). :class:`Script` (blocking) and the asyncio ``AsyncScript`` drive
    it, each with its own I/O.

    A call first tries the script's function of :func:`function_library` (FCALL). A server
    that lost the library (a restart without persistence, a fail-over to a master that never
    had it, ``FUNCTION FLUSH``) is given it and asked again. A server that cannot run functions
    gets EVALSHA, and EVAL with the whole text when it does not know the hash (it restarted,
    or ``SCRIPT FLUSH``); EVAL leaves the script known to the server that ran it, the one
    owning the keys (``SCRIPT LOAD`` would go elsewhere on a Cluster, or to every master,
    failing while one is down). A server that cannot compile the shebang line is sent the text
    without it. None of those refusals ran anything, so trying again is safe; what was
    learned goes to ``traits``, shared by the scripts of one client.
    """

    __slots__ = ("_name", "_packed", "_retry_safe", "fcall_head", "keycount", "keys", "traits")

    def __init__(
        self,
        name: str,
        keys: Sequence[str],
        retry_safe: bool,
        traits: ServerTraits | None = None,
    ) -> None:
        self._name = name
        self._retry_safe = retry_safe
        self.keys = tuple(keys)
        # a retry-safe script's calls give two more keys, first of their arguments: the key of
        # a reply received (to delete), and the key its own reply is kept under
        self.keycount = len(self.keys) + (2 if retry_safe else 0)
        self.traits = traits if traits is not None else ServerTraits()
        self.fcall_head: Head = ("FCALL", function_name(name, retry_safe), self.keycount, *keys)
        self._packed: dict[Head, bytes] = {}
        script_source(name, retry_safe)  # (checks the text once, here)

    @property
    def source(self) -> str:
        """The script's text, as the server can compile it."""
        source = script_source(self._name, self._retry_safe)
        return source if self.traits.shebangs else _without_shebang(source)

    @property
    def head(self) -> Head:
        """What a call sends first."""
        if self.traits.functions:
            return self.fcall_head
        return self._evalsha_head()

    def _evalsha_head(self) -> Head:
        sha = _script_sha(self._name, self._retry_safe, self.traits.shebangs)
        return ("EVALSHA", sha, self.keycount, *self.keys)

    def command(self, head: Head, args: Sequence[Any]) -> bytes:
        """``head`` with ``args``, as one command in the Redis protocol."""
        if _pack_command is not None:
            return _pack_command((*head, *args))
        packed = self._packed.get(head)
        if packed is None:
            # packing ten arguments anew costs more than the server spends running a script
            packed = self._packed[head] = b"".join(map(_resp, head))
        return b"".join([b"*%d\r\n" % (len(head) + len(args)), packed, *map(_resp, args)])

    def after_refusal(
        self, head: Head, error: redis.exceptions.ResponseError
    ) -> Generator[Head | LoadLibrary, Any, Any]:
        """The attempts that follow when the server answered ``head`` with ``error``: each
        step is a head to send with the call's arguments, or :data:`LOAD_LIBRARY`. The driver
        sends the step's reply in, or throws in its error (a ``ResponseError``; for
        :data:`LOAD_LIBRARY`, any error of redis-py); the generator returns the call's reply,
        or raises the error that ends the call (``error`` itself when it is not a refusal of
        this kind)."""
        if head[0] == "FCALL":
            failure = _function_failure(error)
            if failure is None:
                raise error
            if failure == "unsupported":
                self.traits.functions = False
            elif (yield from self._load_library()):
                try:
                    return (yield self.fcall_head)
                except redis.exceptions.ResponseError as exc:
                    if _function_failure(exc) is None:
                        raise
            try:
                return (yield self._evalsha_head())
            except redis.exceptions.ResponseError as exc:
                error = exc
        if not isinstance(error, redis.exceptions.NoScriptError) and not self._drop_shebang(error):
            raise error
        try:
            return (yield ("EVAL", self.source, self.keycount, *self.keys))
        except redis.exceptions.ResponseError as exc:
            if not self._drop_shebang(exc):
                raise
        return (yield ("EVAL", self.source, self.keycount, *self.keys))

    def _load_library(self) -> Generator[LoadLibrary, Any, bool]:
        """Whether FCALL may be tried again once the library was loaded."""
        try:
            yield LOAD_LIBRARY
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc):  # (not another client loading it just now)
                self.traits.functions = False
                return False
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
            return False  # this call goes by EVALSHA, which meets the same trouble if it lasts
        return True

    def _drop_shebang(self, error: BaseException) -> bool:
        """Whether ``error`` says the server cannot compile a shebang line (so that the text
        goes without it from now on)."""
        if "near '#'" not in str(error):
            return False
        self.traits.shebangs = False
        return True


def advance(steps: Generator[Any, Any, Any], outcome: Any) -> tuple[bool, Any]:
    """Hand the outcome of a step of :meth:`ScriptPlan.after_refusal` to ``steps``: thrown in
    when it is an error, else sent. ``(True, the call's reply)`` when they are done, else
    ``(False, the next step)``."""
    try:
        if isinstance(outcome, BaseException):
            return False, steps.throw(outcome)
        return False, steps.send(outcome)
    except StopIteration as done:
        return True, done.value


def _function_failure(exc: BaseException) -> str | None:
    """What ``exc``, a server's reply to FCALL, says: ``"missing"`` when the server does not
    know the function (it lost its functions, or never had them), ``"unsupported"`` when it
    cannot run functions (an older Redis, an emulator, a user not allowed to); ``None`` for
    any other error, which the call raises."""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return "unsupported"
    if not isinstance(exc, redis.exceptions.ResponseError):
        return None
    text = str(exc)
    if "Function not found" in text:
        return "missing"
    if text.lower().startswith("unknown command"):
        return "unsupported"
    return None


class ReplicasBehind(Exception):
    """A change ran, but fewer replicas than asked confirmed it in time (retry the call: the
    retry changes nothing and waits for them again)."""


def check_replicas(acked: Any, wait: tuple[int, int]) -> None:
    """Raise :class:`ReplicasBehind` unless ``acked`` (WAIT's reply) reaches the replicas that
    ``wait`` (replicas, milliseconds) asked for."""
    wanted, ms = wait
    if int(acked) < wanted:
        raise ReplicasBehind(
            f"{acked} of the {wanted} replica(s) asked for confirmed a change within {ms} ms"
        )


class NotSent(Exception):
    """A connection failed before the command reached the server: it surely did not run."""

    def __init__(self, error: redis.exceptions.RedisError) -> None:
        super().__init__(str(error))
        self.error = error


class Script:
    """A Lua script with its keys bound, run through a blocking redis-py client as
    :class:`ScriptPlan` says (its function by FCALL, or EVALSHA, or EVAL), followed on the same
    connection by Redis's ``WAIT`` when ``replica_wait`` asks replicas to confirm each change
    (``ReplicasBehind`` when too few did, which the caller retries).

    One call is one attempt: nothing here retries (the caller does, with the same request id).
    With a plain ``redis.Redis`` client the command is packed here and written straight to a
    pooled connection: redis-py's own encoding cost more than the server spends running the
    script. A failure before the command was written raises :class:`NotSent`.

    With a ``RedisCluster`` client the same packed command goes straight to the master of the
    keys' slot (they share one) as the client knows it; a redirect (``MOVED``, ``ASK``),
    ``TRYAGAIN`` or ``CLUSTERDOWN`` (none of which ran the script) hands the call to the
    client's own routing, which follows the redirect and learns the new layout; a connection
    failure makes the client read the layout again before it is raised. Any other client
    (fakeredis, a subclass) goes through ``execute_command``.

    ``traits``: what the client's servers lack, shared by the scripts of one client (see
    :class:`ServerTraits`).
    """

    __slots__ = ("_client", "_execute", "_fast", "_plan", "_slot", "_wait", "_wait_packed")

    def __init__(
        self,
        client: Any,
        name: str,
        keys: Sequence[str],
        *,
        retry_safe: bool = False,
        replica_wait: tuple[int, int] = (0, 0),
        traits: ServerTraits | None = None,
    ) -> None:
        self._client = client
        self._execute: Any = client.execute_command
        self._plan = ScriptPlan(name, keys, retry_safe, traits)
        # (replicas, ms): a retry-safe call is followed by WAIT on its own connection
        self._wait = replica_wait if retry_safe and replica_wait[0] > 0 else None
        self._wait_packed = (
            b"*3\r\n" + b"".join(_resp(part) for part in ("WAIT", *replica_wait))
            if self._wait
            else b""
        )
        self._fast = type(client) is redis.Redis and _plain_resp2(client)
        self._slot = _one_slot(client, keys)

    def __call__(self, *args: Any) -> Any:
        plan = self._plan
        head = plan.head
        try:
            return self._send(head, args)
        except redis.exceptions.ResponseError as exc:
            steps = plan.after_refusal(head, exc)
        step: Any = next(steps)
        while True:
            try:
                if isinstance(step, LoadLibrary):
                    outcome = self._load_library()
                else:
                    outcome = self._send(step, args)
            except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
                outcome = exc
            finished, step = advance(steps, outcome)
            if finished:
                return step

    def _send(self, head: Head, args: tuple[Any, ...]) -> Any:
        """One attempt of ``head`` with ``args``."""
        if self._fast:
            return self._call_packed(head, args, self._client.connection_pool)
        if self._slot is not None:
            return self._call_slot_master(head, args, self._slot)
        return self._generic(*head, *args)

    def _load_library(self) -> Any:
        """Load :func:`function_library` on the server whose reply said it lacks it: the one
        the packed call went to (a Cluster's master of the keys' slot, as the client knows it
        now)."""
        target = self._client
        if self._slot is not None:
            node = self._client.nodes_manager.get_node_from_slot(self._slot)
            target = node.redis_connection or self._client.get_redis_connection(node)
        return target.execute_command("FUNCTION", "LOAD", function_library()[0])

    def _generic(self, *command: Any) -> Any:
        """Run ``command`` through the client's own routing (and the replicas' WAIT)."""
        if self._wait is None:
            return self._execute(*command)
        if self._slot is not None or not hasattr(self._client, "pipeline"):
            # A Cluster routes a WAIT elsewhere than the command: the retry (which changes
            # nothing) takes the direct path, where the WAIT follows on the same connection.
            self._execute(*command)
            raise ReplicasBehind("the change took a redirect: confirming it on a retry")
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", *self._wait)
        reply, acked = pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acked, Exception):
            raise acked
        self._check_replicas(acked)
        return reply

    def _check_replicas(self, acked: Any) -> None:
        assert self._wait is not None
        check_replicas(acked, self._wait)

    def _call_slot_master(self, head: Head, args: tuple[Any, ...], slot: int) -> Any:
        """One attempt on a ``RedisCluster``: packed, to the master of ``slot``."""
        manager = self._client.nodes_manager
        node = manager.get_node_from_slot(slot)
        node_client = node.redis_connection or self._client.get_redis_connection(node)
        try:
            return self._call_packed(head, args, node_client.connection_pool)
        except (
            redis.exceptions.AskError,  # and MOVED
            redis.exceptions.TryAgainError,
            redis.exceptions.ClusterDownError,
        ):
            return self._generic(*head, *args)
        except (NotSent, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # The caller retries; by then the client should know where the slot lives now.
            with contextlib.suppress(
                redis.exceptions.RedisError, redis.exceptions.RedisClusterException
            ):
                manager.initialize()
            raise

    def _call_packed(self, head: Head, args: tuple[Any, ...], pool: Any) -> Any:
        command = self._plan.command(head, args)
        try:
            connection = pool.get_connection()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise NotSent(exc) from exc
        try:
            try:
                if self._wait is None:
                    connection.send_packed_command([command])
                else:
                    connection.send_packed_command([command, self._wait_packed])
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # A command cut short is never run: the server drops it with the connection.
                connection.disconnect()
                raise NotSent(exc) from exc
            try:
                if self._wait is None:
                    return connection.read_response()
                try:
                    reply = connection.read_response()
                except redis.exceptions.ResponseError:
                    connection.read_response()  # the WAIT's reply: keep the connection in step
                    raise
                self._check_replicas(connection.read_response())
                return reply
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                connection.disconnect()
                raise
        finally:
            pool.release(connection)


def _one_slot(client: Any, keys: Sequence[str]) -> int | None:
    """The Cluster slot of all of ``keys``, for a ``RedisCluster`` whose nodes speak plain
    RESP2; ``None`` for any other client, or keys in several slots."""
    if type(client) is not redis.cluster.RedisCluster or not keys:
        return None
    kwargs = client.nodes_manager.connection_kwargs
    if kwargs.get("protocol") not in (None, 2, "2") or kwargs.get("cache"):
        return None
    slots = {redis.crc.key_slot(key.encode("utf-8")) for key in keys}
    return slots.pop() if len(slots) == 1 else None


def _plain_resp2(client: redis.Redis) -> bool:
    """Whether the client's connections are redis-py's own, speaking RESP2 without extras.

    A Sentinel's connections qualify: they find the master when they connect, and drop
    themselves when they find a replica instead (READONLY), which the packed path sees as the
    connection failure it is.
    """
    kwargs = client.connection_pool.connection_kwargs
    connection_class = client.connection_pool.connection_class
    return (
        connection_class
        in (
            redis.Connection,
            redis.SSLConnection,
            redis.UnixDomainSocketConnection,
            redis.sentinel.SentinelManagedConnection,
            redis.sentinel.SentinelManagedSSLConnection,
        )
        and kwargs.get("protocol") in (None, 2, "2")
        and not kwargs.get("cache")
        and client.connection is None
    )
