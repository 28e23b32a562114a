"""Keys of function calls for ``@cached``: one canonical text per call, in every process.

``@cached`` keys a call by the function's qualified name and its arguments, bound to the
function's signature (so ``f(1)``, ``f(x=1)`` and ``f(1, y=<default>)`` are one call) and
written in a canonical form that is the same in every process: ``module.qualname(arg, ...)``.
Arguments may be ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``tuple``, ``list``,
``dict``, ``set``, ``frozenset``, ``datetime`` values, ``Decimal``, ``UUID`` and enum members, in
any nesting; sets and dicts are written in a sorted order, never in hash order (which differs
between processes). Any other argument raises ``TypeError``: pass ``key=`` to ``cached()``.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import inspect
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["CallKeys", "call_key", "function_name", "why_name_is_ambiguous"]

_INT_LIMIT = 10**600  # beyond this, Python may refuse int -> str; such ints are written in hex


def _encode(obj: object) -> str:
    kind = type(obj)
    if kind is str or kind is bytes or kind is bool or obj is None or kind is float:
        return repr(obj)
    if kind is int:
        if -_INT_LIMIT < obj < _INT_LIMIT:  # type: ignore[operator]
            return repr(obj)
        return f"int({obj:#x})"
    if kind is tuple:
        return "(" + "".join(_encode(item) + "," for item in obj) + ")"  # type: ignore[attr-defined]
    if kind is list:
        return "[" + ",".join(_encode(item) for item in obj) + "]"  # type: ignore[attr-defined]
    if kind is dict:
        pairs = sorted(f"{_encode(k)}:{_encode(v)}" for k, v in obj.items())  # type: ignore[attr-defined]
        return "{" + ",".join(pairs) + "}"
    if kind is set or kind is frozenset:
        return f"{kind.__name__}({{{','.join(sorted(_encode(item) for item in obj))}}})"  # type: ignore[attr-defined]
    if kind in _REPR_TYPES:
        return repr(obj)
    if isinstance(obj, enum.Enum):
        return f"{kind.__module__}.{kind.__qualname__}.{obj.name}"
    raise TypeError(
        f"cannot build a cache key from an argument of type {kind.__qualname__!r}: pass "
        "key=... to cached() to choose what identifies a call"
    )


_REPR_TYPES = frozenset(
    {
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        decimal.Decimal,
        uuid.UUID,
    }
)


def function_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of ``func``, the same in a process started by multiprocessing."""
    module = getattr(func, "__module__", None) or "?"
    if module == "__mp_main__":  # the main module, as seen by a spawned child
        module = "__main__"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    return f"{module}.{qualname}"


def why_name_is_ambiguous(func: Callable[..., Any]) -> str | None:
    """Why ``module.qualname`` may name other functions than ``func`` too, or ``None``.

    The name identifies a function defined at the top level of a module (or in a class
    there): no other function of any process has it. It does not identify a lambda (every
    lambda of a module is ``<lambda>``), a function made inside another function (each call
    of the outer function makes one more under the same name, closing over other values), a
    bound method (the instance is not in the name), a ``functools.partial`` or a callable
    without a qualified name.
    """
    if isinstance(func, functools.partial):
        return "it is a functools.partial: its bound arguments are not part of its name"
    if inspect.ismethod(func):
        owner = type(func.__self__).__name__
        return f"it is a method bound to {owner!r} object: the instance is not part of its name"
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str) or not getattr(func, "__module__", None):
        return f"a {type(func).__name__!r} object has no module and qualified name"
    if "<lambda>" in qualname:
        return f"{qualname!r} is a lambda: every lambda of its module has that name"
    if "<locals>" in qualname:
        return (
            f"{qualname!r} is defined inside another function: every function that code makes "
            "has that name"
        )
    code = getattr(func, "__code__", None)
    closed_over = sorted(set(code.co_freevars) - {"__class__"}) if code is not None else []
    if closed_over:  # a wrapper made by a decorator, named after the function it wraps
        return (
            f"{qualname!r} is a closure over {', '.join(closed_over)}: two of them can have "
            "that name and do different things"
        )
    return None


def call_key(
    name: str, signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    """The canonical text of the call ``name(*args, **kwargs)``; ``TypeError`` if it has none.

    With a ``signature``, the arguments are bound to it first (``TypeError`` for arguments that
    do not fit it, as the call itself would raise).
    """
    try:
        if signature is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return name + "(" + ",".join(map(_encode, bound.arguments.values())) + ")"
        parts = [_encode(value) for value in args]
        parts += [f"{k}={_encode(v)}" for k, v in sorted(kwargs.items())]
        return name + "(" + ",".join(parts) + ")"
    except RecursionError:
        raise TypeError("cannot build a cache key: an argument is nested too deeply") from None


class CallKeys:
    """:func:`call_key` for one function, with a fast path for the common call.

    A call that passes every parameter positionally, to a function whose parameters are all
    plain positional-or-keyword ones, needs no binding: its arguments are already in the
    order of the signature. Its text is the one :func:`call_key` gives.
    """

    def __init__(self, name: str, func: Callable[..., Any]) -> None:
        self.name = name
        self._open = name + "("
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have none: key by the args as given
            self.signature = None
            self._arity = -1
            return
        parameters = self.signature.parameters.values()
        plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
        self._arity = len(self.signature.parameters) if plain else -1

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not kwargs and len(args) == self._arity:
            try:
                return self._open + ",".join(map(_encode, args)) + ")"
            except RecursionError:
                raise TypeError(
                    "cannot build a cache key: an argument is nested too deeply"
                ) from None
        return call_key(self.name, self.signature, args, kwargs)
