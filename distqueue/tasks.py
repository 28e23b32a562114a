"""Tasks as they travel, which tasks a worker may run, and outcomes as they come back.

**Which functions are tasks.** A task is a plain Python function defined at module level
(``def`` in a module other than ``__main__``), or any function marked with :func:`task`. A worker
runs a task only when it was allowed to (:class:`Allowlist`): the function is registered with
:func:`task` in the worker's process, or the worker was given its module or its exact path
(``distqueue worker --allow mypkg.tasks --allow other:fn``). A task naming anything else is
refused *before anything is imported*, and becomes a dead letter saying why. Built-in and C
functions (``len``, ``os.getpid``), classes, methods, partials and other callables are never
tasks.

**The message** (one item on the task queue, always encoded by the safe JSON serializer)::

    {"v": 1, "task": ID, "fn": "module:qualname", "reply": REPLY_QUEUE,
     "serializer": "json" | "pickle", "ttl": SECONDS | null, "body": BYTES, "sig": BYTES}

``body`` is ``[args, kwargs]`` encoded by ``serializer``; ``ttl`` is how long the worker keeps
the result; ``sig`` (present only when the submitter has a signing key) is
``HMAC-SHA256(key, fields)`` over every other field (see :func:`signed_bytes`). A worker with a
key checks it with :func:`hmac.compare_digest` before it looks at ``body``, and a ``pickle`` body
is loaded only from a message whose signature it checked: pickle runs code while it loads.

**The outcome** (:class:`Outcome`, kept by :class:`~distqueue.results.ResultStore` under the
task's id, encoded by the task's serializer) carries a value, or an exception as its type's
name, its ``str()``, its traceback as text and, where the serializer can carry them, its
``args`` (and ``errno``, ``strerror``, ``filename`` and ``filename2`` for ``OSError``), so that
a built-in exception comes back as itself: ``KeyError(('a', 1))`` as ``KeyError(('a', 1))``::

    ["ok", VALUE]
    ["error", TYPE_NAME, MESSAGE, TRACEBACK_TEXT]            (+ {"args": [...], ...} when known)

**The announcement** (one item on the submitter's reply queue, put once the outcome is
stored) is the task's id as a string; :data:`WAKE_UP` (``None``) is the item an Executor
puts there itself to end its own wait at shutdown.

Everything that travels between a submitter and a worker is built and read here.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import importlib
import inspect
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import DeserializationError, DistQueueError, SerializationError, TaskFailed
from .kv.base import check_ttl
from .serializers import Serializer, get_serializer

__all__ = [
    "WAKE_UP",
    "Allowlist",
    "Outcome",
    "TaskMessage",
    "TaskNotFound",
    "TaskRefused",
    "announced_task",
    "announcement",
    "exception_from",
    "failure_outcome",
    "function_path",
    "render_exception",
    "task",
]

F = TypeVar("F", bound=Callable[..., Any])

VERSION = 1
SERIALIZERS = ("json", "pickle")
_ENVELOPE = get_serializer("json")


class TaskNotFound(DistQueueError, LookupError):
    """A worker could not find the allowed function a task names."""


class TaskRefused(DistQueueError):
    """A worker refused a task message: not allowed, unsigned, wrongly signed, or malformed.

    ``reason`` says which; the message is kept as a dead letter with that reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- registration ------------------------------------------------------------------------------

_registry: dict[str, Callable[..., Any]] = {}


def task(fn: F) -> F:
    """Mark ``fn`` as a task: workers whose process imported its module may run it.

    Returns ``fn`` itself. Raises ``ValueError`` for a function that has no import path (a
    lambda, a function defined inside another function) and ``TypeError`` for something that is
    not a Python function (a built-in, a class, a callable object).
    """
    if not inspect.isfunction(fn):
        raise TypeError(f"@task marks Python functions, not {_describe(fn)}")
    module, qualname = fn.__module__, fn.__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ValueError(
            f"{module}.{qualname} cannot be a task: lambdas and functions defined inside other "
            "functions have no import path; define it at module level"
        )
    fn.__distqueue_task__ = True  # type: ignore[attr-defined]
    _registry[f"{module}:{qualname}"] = fn
    return fn


def _describe(fn: object) -> str:
    if inspect.isbuiltin(fn) or inspect.ismethoddescriptor(fn):
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "?")
        return f"the built-in {getattr(fn, '__module__', None) or 'builtins'}.{name}"
    if inspect.isclass(fn):
        return f"the class {fn.__module__}.{fn.__qualname__}"
    if inspect.ismethod(fn):
        return f"the bound method {fn.__qualname__}"
    return f"{type(fn).__name__} object {fn!r:.80}"


def function_path(fn: Callable[..., Any]) -> str:
    """The ``module:qualname`` a worker finds ``fn`` by.

    Raises ``ValueError`` for anything that is not a task: a lambda, a function defined inside
    another function or in ``__main__``, a built-in or C function, a class, a bound method, a
    method not marked with :func:`task`, a partial or another callable object.
    """
    if not inspect.isfunction(fn):
        raise ValueError(
            f"{_describe(fn)} is not a task: submit a module-level Python function, or one "
            "marked with @distqueue.task"
        )
    module, qualname = fn.__module__, fn.__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ValueError(
            f"{module}.{qualname} cannot travel to a worker: lambdas and functions defined "
            "inside other functions have no import path; define it at module level"
        )
    if module == "__main__":
        raise ValueError(
            f"{qualname} is defined in __main__, which a worker cannot import; "
            "move it to a module both sides can import"
        )
    if "." in qualname and not getattr(fn, "__distqueue_task__", False):
        raise ValueError(
            f"{module}.{qualname} is a method, not a task: mark it with @distqueue.task or "
            "submit a module-level function"
        )
    path = f"{module}:{qualname}"
    found = _lookup(path)
    if found is not fn:
        raise ValueError(f"{path} does not name {fn!r} when imported")
    return path


def _lookup(path: str) -> Any:
    """The object at ``module:qualname``, importing the module; ``TaskNotFound`` if none."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TaskNotFound(f"cannot import {path!r}: {exc}") from exc
    return target


class Allowlist:
    """The tasks one worker may run: the functions registered with :func:`task` in its process,
    every function defined in the ``modules`` named, and the ``module:qualname`` ``functions``
    named. ``entries`` mixes both (``"mypkg.tasks"``, ``"mypkg.other:handler"``).

    :meth:`resolve` decides from the name alone, before importing anything, and only then
    imports; a name found in an allowed module must be a Python function defined *there* (an
    ``import os`` in an allowed module does not allow ``mymodule:os.system``).
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.modules: set[str] = set()
        self.functions: set[str] = set()
        for entry in entries:
            entry = entry.strip()
            module, sep, qualname = entry.partition(":")
            if (
                not module
                or (sep and not qualname)
                or not all(
                    part.isidentifier() for part in module.split(".") + qualname.split(".") if part
                )
            ):
                raise ValueError(f"--allow {entry!r}: expected MODULE or MODULE:FUNCTION")
            (self.functions if sep else self.modules).add(entry)

    def __bool__(self) -> bool:
        return bool(self.modules or self.functions or _registry)

    def __repr__(self) -> str:
        return f"Allowlist({sorted(self.modules | self.functions)!r})"

    def import_all(self) -> None:
        """Import the allowed modules now (registering their tasks); ``TaskNotFound`` if one
        cannot be imported."""
        for name in sorted(self.modules | {f.partition(":")[0] for f in self.functions}):
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise TaskNotFound(f"cannot import allowed module {name!r}: {exc}") from exc

    def allows(self, path: str) -> bool:
        """Whether ``path`` may run here, decided from the name alone."""
        module, sep, qualname = path.partition(":")
        if not sep or not module or not qualname:
            return False
        return path in _registry or path in self.functions or module in self.modules

    def resolve(self, path: str) -> Callable[..., Any]:
        """The function ``path`` names. Raises :class:`TaskRefused` (before any import) when it
        is not allowed, :class:`TaskNotFound` when an allowed name finds no task function."""
        if not self.allows(path):
            raise TaskRefused(f"task {path!r} is not allowed on this worker ({self._allowed()})")
        registered = _registry.get(path)
        if registered is not None:
            return registered
        found = _lookup(path)
        module, _, qualname = path.partition(":")
        if not (
            inspect.isfunction(found)
            and found.__module__ == module
            and found.__qualname__ == qualname
        ):
            raise TaskNotFound(f"{path!r} is {_describe(found)}, not a function defined there")
        return found

    def _allowed(self) -> str:
        named = sorted(self.modules | self.functions)
        parts = [f"--allow {', '.join(named)}" if named else "no --allow"]
        parts.append(f"{len(_registry)} registered with @task")
        return "; ".join(parts)


# -- the message -------------------------------------------------------------------------------


def signed_bytes(fields: Iterable[bytes]) -> bytes:
    """What a signature covers: each field as its 4-byte big-endian length, then itself, so that
    no two different messages give the same bytes."""
    return b"".join(len(field).to_bytes(4, "big") + field for field in fields)


def _sign(key: bytes, fields: Iterable[bytes]) -> bytes:
    return hmac.new(key, signed_bytes(fields), hashlib.sha256).digest()


def signing_key(key: bytes | str | None) -> bytes | None:
    """``key`` as bytes (a ``str`` as UTF-8); ``ValueError`` for an empty key."""
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes):
        raise TypeError(f"a signing key is bytes or str, not {type(key).__name__}")
    if not key:
        raise ValueError("the signing key is empty")
    return key


@dataclass(frozen=True)
class TaskMessage:
    """One task as it travels; :meth:`encode` gives the queue item, :meth:`decode` checks one."""

    task_id: str
    path: str
    reply: str
    serializer: str
    ttl: float | None
    body: bytes
    signature: bytes | None = None

    def _fields(self) -> list[bytes]:
        return [
            str(VERSION).encode(),
            self.task_id.encode("utf-8", "surrogatepass"),
            self.path.encode("utf-8", "surrogatepass"),
            self.reply.encode("utf-8", "surrogatepass"),
            self.serializer.encode("utf-8", "surrogatepass"),
            b"" if self.ttl is None else repr(self.ttl).encode(),
            self.body,
        ]

    @classmethod
    def build(
        cls,
        task_id: str,
        path: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        reply: str,
        *,
        serializer: Serializer,
        ttl: float | None,
        key: bytes | None,
    ) -> TaskMessage:
        """The message for one call. Raises ``SerializationError`` for arguments ``serializer``
        cannot carry, ``ValueError`` for a serializer that is neither json nor pickle."""
        name = getattr(serializer, "name", None)
        if name not in SERIALIZERS:
            raise ValueError(f"tasks travel with the json or pickle serializer, not {name!r}")
        body = serializer.dumps([args, kwargs])
        message = cls(task_id, path, reply, name, check_ttl(ttl, "result_ttl"), body)
        if key is not None:
            message = cls(*message._plain(), signature=_sign(key, message._fields()))
        return message

    def _plain(self) -> tuple[str, str, str, str, float | None, bytes]:
        return (self.task_id, self.path, self.reply, self.serializer, self.ttl, self.body)

    def encode(self) -> dict[str, Any]:
        """The item put on the task queue."""
        item: dict[str, Any] = {
            "v": VERSION,
            "task": self.task_id,
            "fn": self.path,
            "reply": self.reply,
            "serializer": self.serializer,
            "ttl": self.ttl,
            "body": self.body,
        }
        if self.signature is not None:
            item["sig"] = self.signature
        return item

    @classmethod
    def decode(cls, item: Any) -> TaskMessage:
        """The message in a queue item; :class:`TaskRefused` if it is not a well-formed one."""
        if type(item) is not dict:
            raise TaskRefused("not an Executor task (start the worker with MODULE:FUNCTION?)")
        if item.get("v") != VERSION:
            raise TaskRefused(f"not an Executor task message of version {VERSION}")
        fields = {"task": str, "fn": str, "reply": str, "serializer": str, "body": bytes}
        for name, kind in fields.items():
            if type(item.get(name)) is not kind:
                raise TaskRefused(f"malformed task message: {name!r} is not {kind.__name__}")
        signature = item.get("sig")
        if signature is not None and type(signature) is not bytes:
            raise TaskRefused("malformed task message: 'sig' is not bytes")
        extra = set(item) - set(fields) - {"v", "ttl", "sig"}
        if extra:
            raise TaskRefused(f"malformed task message: unknown fields {sorted(extra)}")
        if item["serializer"] not in SERIALIZERS:
            raise TaskRefused(f"unknown serializer {item['serializer']!r} in a task message")
        try:
            ttl = check_ttl(item.get("ttl"), "ttl")
        except (TypeError, ValueError) as exc:
            raise TaskRefused(f"malformed task message: {exc}") from None
        return cls(
            item["task"],
            item["fn"],
            item["reply"],
            item["serializer"],
            ttl,
            item["body"],
            signature,
        )

    def verify(self, key: bytes | None) -> None:
        """Check the signature against ``key`` (``None``: the worker has none). Raises
        :class:`TaskRefused` for an unsigned or wrongly signed message when there is a key, and
        for a pickle body whose signature was not checked."""
        if key is None:
            if self.serializer == "pickle":
                raise TaskRefused(
                    "pickle arguments are loaded only from signed messages, and this worker "
                    "has no signing key"
                )
            return
        if self.signature is None:
            raise TaskRefused("unsigned task message, and this worker requires a signature")
        if not hmac.compare_digest(self.signature, _sign(key, self._fields())):
            raise TaskRefused("the task message's signature does not match this worker's key")

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` from the body; call :meth:`verify` first. Raises
        :class:`TaskRefused` for a body that cannot be decoded or is not ``[list, dict]``."""
        try:
            decoded = get_serializer(self.serializer).loads(self.body)
        except DistQueueError as exc:
            raise TaskRefused(f"the task's arguments cannot be decoded: {exc}") from None
        if not (
            type(decoded) is list
            and len(decoded) == 2
            and isinstance(decoded[0], (list, tuple))
            and isinstance(decoded[1], dict)
            and all(type(name) is str for name in decoded[1])
        ):
            raise TaskRefused("the task's arguments are not [args, kwargs]")
        return tuple(decoded[0]), decoded[1]


# -- outcomes ----------------------------------------------------------------------------------

_OK = "ok"
_ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    """How a task ended: its return value, or the exception it raised (as text).

    ``exc_type`` is ``None`` for a task that returned ``value``; otherwise it is the name of
    the exception's type, with ``message`` and ``traceback_text``, and ``value`` is what could be
    carried of the exception itself (``{"args": ..., "errno": ...}``) or ``None``.
    """

    task_id: str
    value: Any = None
    exc_type: str | None = None
    message: str = ""
    traceback_text: str = ""

    @property
    def failed(self) -> bool:
        return self.exc_type is not None

    def encode(self) -> list[Any]:
        """The outcome as the results store keeps it: ``["ok", value]``, or ``["error", type
        name, message, traceback]`` followed by what the exception carries, when it carries
        anything."""
        if self.exc_type is None:
            return [_OK, self.value]
        stored = [_ERROR, self.exc_type, self.message, self.traceback_text]
        if self.value is not None:
            stored.append(self.value)
        return stored

    @classmethod
    def decode(cls, task_id: str, stored: Any) -> Outcome:
        """The outcome :meth:`encode` gave; ``DeserializationError`` for anything else."""
        if type(stored) is list and stored:
            if stored[0] == _OK and len(stored) == 2:
                return cls(task_id, stored[1])
            if (
                stored[0] == _ERROR
                and len(stored) in (4, 5)
                and all(type(s) is str for s in stored[1:4])
            ):
                details = stored[4] if len(stored) == 5 else None
                return cls(task_id, details, stored[1], stored[2], stored[3])
        raise DeserializationError(f"the stored result of {task_id!r} is not an outcome")

    def result(self) -> Any:
        """The task's return value; raises :class:`TaskFailed` if the task raised."""
        if self.exc_type is not None:
            raise TaskFailed(self.task_id, self.exc_type, self.message, self.traceback_text)
        return self.value


# -- task ids ------------------------------------------------------------------------------


def new_task_id() -> str:
    """A task id in the layout of a version 7 UUID (32 hex digits): the submission time in Unix
    milliseconds, then random bits, so a worker can tell how long a task waited
    (:func:`submitted_at`)."""
    value = (int(time.time() * 1000) & (2**48 - 1)) << 80
    value |= 0x7 << 76 | (int.from_bytes(os.urandom(2), "big") & 0xFFF) << 64
    value |= 0b10 << 62 | (int.from_bytes(os.urandom(8), "big") & (2**62 - 1))
    return f"{value:032x}"


def submitted_at(task_id: str) -> float | None:
    """When the task ``task_id`` was submitted (Unix time, by the submitter's clock), or
    ``None`` for an id of another layout (an older submitter's random one, say)."""
    if len(task_id) != 32 or task_id[12] != "7" or task_id[16] not in "89ab":
        return None
    try:
        return int(task_id[:12], 16) / 1000
    except ValueError:
        return None


# -- announcements -----------------------------------------------------------------------------

WAKE_UP = None
"""The item an Executor puts on its own reply queue to wake its collector at shutdown."""


def announcement(task_id: str) -> str:
    """The item a worker puts on the reply queue once the outcome of ``task_id`` is stored."""
    return task_id


def announced_task(item: Any) -> str | None:
    """The task id a reply-queue item announces; ``None`` for :data:`WAKE_UP` or anything
    that announces nothing."""
    return item if type(item) is str else None


_OS_ATTRIBUTES = ("errno", "strerror", "filename", "filename2")


def render_exception(exc: BaseException) -> str:
    """``str(exc)``, else ``repr(exc)``, else a description that touches neither."""
    for render in (str, repr):
        try:
            text = render(exc)
        except BaseException:  # the exception's own __str__/__repr__ failed; try the next
            continue
        if isinstance(text, str):
            return text
    return f"<{type(exc).__name__} whose str() and repr() raised>"


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException:  # formatting runs the exception's own code; keep what is certain
        return "".join(traceback.format_tb(exc.__traceback__))


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for built-in types, ``package.module.Error`` for the others."""
    kind = type(exc)
    try:
        module, qualname = str(kind.__module__), str(kind.__qualname__)
    except BaseException:  # a metaclass of someone's making
        return "Exception"
    return qualname if module == "builtins" else f"{module}.{qualname}"


def _details(exc: BaseException, serializer: Serializer) -> dict[str, Any] | None:
    """What ``exc`` carries that the serializer can carry: its args, and OSError's fields."""
    try:
        details: dict[str, Any] = {"args": tuple(exc.args)}
        if isinstance(exc, OSError):
            for name in _OS_ATTRIBUTES:
                details[name] = getattr(exc, name)
        serializer.dumps(details)
    except BaseException:  # args of a type the serializer refuses, or a hostile __getattr__
        return None
    return details


def failure_outcome(task_id: str, exc: BaseException, serializer: Serializer) -> Outcome:
    """The outcome of a task that raised ``exc``, whatever ``exc`` is; never raises."""
    return Outcome(
        task_id,
        _details(exc, serializer),
        exception_type_name(exc),
        render_exception(exc),
        _traceback(exc),
    )


_OWN_ERRORS: dict[str, type[DistQueueError]] = {
    "SerializationError": SerializationError,
    "distqueue.errors.SerializationError": SerializationError,
}


def exception_from(outcome: Outcome) -> BaseException:
    """The exception a failed outcome stands for: the built-in type itself when it is one
    (``ValueError(*args)``, ``OSError`` with its ``errno`` ...), ``SerializationError`` for a
    result the worker could not encode, else :class:`TaskFailed`. No code is imported, and the
    remote traceback is kept as text (``remote_traceback``, and a note on Python 3.11+).
    Built-in exceptions that are not ``Exception`` subclasses (``SystemExit``,
    ``KeyboardInterrupt``) come back as :class:`TaskFailed`, so that they cannot stop the
    caller."""
    name = outcome.exc_type or "Exception"
    exc: BaseException | None = None
    own = _OWN_ERRORS.get(name)
    builtin = getattr(builtins, name, None)
    details = outcome.value if isinstance(outcome.value, dict) else {}
    if own is not None:
        exc = own(outcome.message)
    elif isinstance(builtin, type) and issubclass(builtin, Exception):
        exc = _rebuild(builtin, outcome.message, details)
    if exc is None:
        return TaskFailed(outcome.task_id, name, outcome.message, outcome.traceback_text)
    if hasattr(exc, "add_note"):  # Python 3.11 and newer
        exc.add_note(f"remote traceback:\n{outcome.traceback_text}")
    exc.remote_traceback = outcome.traceback_text  # type: ignore[attr-defined]
    return exc


def _rebuild(kind: type[Exception], message: str, details: dict[str, Any]) -> Exception | None:
    args = details.get("args")
    try:
        exc = kind(*args) if isinstance(args, tuple) else kind(message)
        if isinstance(exc, OSError):
            for name in _OS_ATTRIBUTES:
                # an unset field stays unset: set to None, it would show in str(exc)
                if details.get(name) is not None:
                    setattr(exc, name, details[name])
    except Exception:  # an unusual constructor signature: reported as TaskFailed
        return None
    return exc
