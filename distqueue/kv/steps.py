"""Operations over a key-value backend as generators of backend calls, and their two drivers.

The cache's logic (:mod:`distqueue.cacheops`) and the value layer (:mod:`.values`) do no I/O
themselves: each operation is a generator that yields :class:`KVCall` steps, one per call of
the backend contract (:class:`~.base.KVBackend`), and is sent each call's result, or has the
call's exception thrown into it, at the point where it yielded. Its return value is the
operation's result. :func:`drive` performs the steps with a blocking backend, :func:`adrive`
awaits them on an asyncio backend whose methods have the same names and arguments (the Redis
one of :mod:`.aioredis`), so that one operation serves blocking and asyncio callers alike.
:func:`run` and :func:`arun` drive any such generator with a function that performs one
step (the Redis backends drive their own steps with them, see :mod:`.redisprotocol`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
S = TypeVar("S")


class KVCall(NamedTuple):
    """Call ``method`` of the backend with ``args``; the reply is what it returns."""

    method: str
    args: tuple[Any, ...]


def call(method: str, *args: Any) -> KVCall:
    """The step that calls ``method(*args)`` on the backend."""
    return KVCall(method, args)


KVOp = Generator[KVCall, Any, T]
"""An operation: yields backend calls, returns its result."""


def run(operation: Generator[S, Any, T], perform: Callable[[S], Any]) -> T:
    """Perform each step of ``operation`` with ``perform``, sending back its result or throwing
    in its exception; the operation's result, or the exception it lets out."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = operation.send(reply) if error is None else operation.throw(error)
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            reply, error = perform(step), None
        except Exception as exc:
            reply, error = None, exc


async def arun(operation: Generator[S, Any, T], perform: Callable[[S], Awaitable[Any]]) -> T:
    """As :func:`run`, awaiting each step. A cancellation while a step is awaited closes the
    operation where it stands (its later steps are not performed)."""
    reply: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = operation.send(reply) if error is None else operation.throw(error)
            except StopIteration as done:
                result: T = done.value
                return result
            try:
                reply, error = await perform(step), None
            except Exception as exc:
                reply, error = None, exc
    finally:
        operation.close()


def drive(operation: KVOp[T], backend: Any) -> T:
    """Perform ``operation``'s calls on a blocking ``backend``; its result, or the exception it
    lets out (a call's own, when the operation does not catch it)."""
    return run(operation, lambda step: getattr(backend, step.method)(*step.args))


async def adrive(operation: KVOp[T], backend: Any) -> T:
    """As :func:`drive`, awaiting each call on an asyncio ``backend`` (see :func:`arun`)."""
    return await arun(operation, lambda step: getattr(backend, step.method)(*step.args))
