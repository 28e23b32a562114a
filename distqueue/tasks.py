"""Tasks as they travel: a function named by its import path, its arguments, and where to
report; and outcomes as they come back: a value, or an exception's type, message and traceback.

Functions travel by import path (``module:qualname``), never as code: a lambda, a function
defined inside another function, or one defined in ``__main__`` cannot be found by a worker in
another process and is refused at submit time. Arguments and results go through the queue's
serializer (the safe one by default).
"""

from __future__ import annotations

import builtins
import importlib
import traceback
from collections.abc import Callable
from typing import Any

from .cache.results import Outcome
from .errors import DistQueueError, TaskFailed


class TaskNotFound(DistQueueError, LookupError):
    """A worker could not import the function a task names."""


def function_path(fn: Callable[..., Any]) -> str:
    """The ``module:qualname`` a worker imports ``fn`` by; ``ValueError`` if it has none."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname:
        raise ValueError(f"{fn!r} has no importable name: submit a module-level function")
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
    found = resolve_function(f"{module}:{qualname}")
    if found is not fn and getattr(found, "__wrapped__", None) is not fn:
        raise ValueError(f"{module}:{qualname} does not name {fn!r} when imported")
    return f"{module}:{qualname}"


def resolve_function(path: str) -> Callable[..., Any]:
    """Import ``module:qualname``; ``TaskNotFound`` if it cannot be found or called."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise TaskNotFound(f"{path!r} is not of the form 'module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise TaskNotFound(f"cannot import {path!r}: {exc}") from exc
    if not callable(target):
        raise TaskNotFound(f"{path!r} is not callable")
    return target  # type: ignore[no-any-return]


def make_task(
    task_id: str, path: str, args: tuple[Any, ...], kwargs: dict[str, Any], reply: str
) -> dict[str, Any]:
    """The item an Executor puts on the queue for one call."""
    return {"task": task_id, "fn": path, "args": args, "kwargs": kwargs, "reply": reply}


def is_task(item: Any) -> bool:
    return (
        type(item) is dict
        and isinstance(item.get("task"), str)
        and isinstance(item.get("fn"), str)
        and isinstance(item.get("args"), tuple)
        and isinstance(item.get("kwargs"), dict)
    )


def exception_from(outcome: Outcome) -> BaseException:
    """The exception a failed outcome stands for: the built-in type itself when it is one
    (``ValueError``, ``KeyError`` ...), else :class:`TaskFailed`. No code is imported, and the
    remote traceback is kept as text (``remote_traceback``, and a note on Python 3.11+)."""
    name = outcome.exc_type or "Exception"
    builtin = getattr(builtins, name, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        try:
            exc: BaseException = builtin(outcome.message)
        except Exception:  # an unusual constructor signature: reported as TaskFailed below
            pass
        else:
            if hasattr(exc, "add_note"):  # Python 3.11 and newer
                exc.add_note(f"remote traceback:\n{outcome.traceback_text}")
            exc.remote_traceback = outcome.traceback_text  # type: ignore[attr-defined]
            return exc
    return TaskFailed(outcome.task_id, name, outcome.message, outcome.traceback_text)


def exception_type_name(exc: BaseException) -> str:
    """``ValueError`` for built-in types, ``package.module.Error`` for the others."""
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
