"""The decisions of a script call, with no server: what :class:`ScriptPlan` sends after each
kind of refusal, and what it remembers for the other scripts of the same client. The blocking
and asyncio drivers run these very steps (their I/O is tested against real servers in
test_redis.py, test_aio_redis.py and test_cluster.py)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import redis.exceptions

from distqueue.backends.scripts import (
    LOAD_LIBRARY,
    ScriptPlan,
    ServerTraits,
    function_name,
    script_source,
    sha_of,
)

KEYS = ("dq:{q}:items", "dq:{q}:meta")
NOT_FOUND = redis.exceptions.ResponseError("ERR Function not found")
UNKNOWN = redis.exceptions.ResponseError("unknown command 'FCALL', with args beginning with: ")
DENIED = redis.exceptions.NoPermissionError("NOPERM this user has no permissions to run 'fcall'")
NOSCRIPT = redis.exceptions.NoScriptError("No matching script. Please use EVAL.")
SHEBANG = redis.exceptions.ResponseError(
    "Error compiling script (new function): user_script:1: unexpected symbol near '#'"
)


def plan(traits: ServerTraits | None = None) -> ScriptPlan:
    return ScriptPlan("size.lua", KEYS, False, traits)


def steps_after(
    p: ScriptPlan, error: redis.exceptions.ResponseError, answers: list[Any]
) -> list[Any]:
    """Drive the attempts after the first head was refused with ``error``: each answer is
    thrown in when it is an exception, else sent; the steps taken, then ("reply", result)."""
    attempts: Generator[Any, Any, Any] = p.after_refusal(p.head, error)
    taken = []
    step = next(attempts)
    for answer in answers:
        taken.append(step if step is LOAD_LIBRARY else step[0])
        try:
            step = (
                attempts.throw(answer) if isinstance(answer, Exception) else attempts.send(answer)
            )
        except StopIteration as done:
            taken.append(("reply", done.value))
            return taken
    raise AssertionError(f"the plan wanted more: {step!r} after {taken}")


def test_a_call_tries_the_function_first() -> None:
    head = plan().head
    assert head == ("FCALL", function_name("size.lua", False), 2, *KEYS)


def test_a_server_that_lost_the_functions_is_given_them_and_asked_again() -> None:
    p = plan()
    assert steps_after(p, NOT_FOUND, [None, 5]) == [LOAD_LIBRARY, "FCALL", ("reply", 5)]
    assert p.traits.functions


@pytest.mark.parametrize(
    "loaded", ["OK", redis.exceptions.ResponseError("ERR Library 'x' already exists")]
)
def test_a_library_loaded_by_someone_else_meanwhile_is_used(loaded: Any) -> None:
    p = plan()
    assert steps_after(p, NOT_FOUND, [loaded, 5]) == [LOAD_LIBRARY, "FCALL", ("reply", 5)]


@pytest.mark.parametrize("refusal", [UNKNOWN, DENIED])
def test_a_server_that_cannot_run_functions_gets_evalsha_from_then_on(
    refusal: redis.exceptions.ResponseError,
) -> None:
    traits = ServerTraits()
    p = plan(traits)
    assert steps_after(p, refusal, [5]) == ["EVALSHA", ("reply", 5)]
    assert not traits.functions
    sha = sha_of(script_source("size.lua", False))
    assert plan(traits).head == ("EVALSHA", sha, 2, *KEYS)  # another script of the client


def test_a_refused_load_falls_back_to_evalsha_and_eval() -> None:
    p = plan()
    refused = redis.exceptions.ResponseError("NOPERM no permissions to run 'function|load'")
    steps = steps_after(p, NOT_FOUND, [refused, NOSCRIPT, 5])
    assert steps == [LOAD_LIBRARY, "EVALSHA", "EVAL", ("reply", 5)]
    assert not p.traits.functions


def test_a_load_that_failed_on_the_way_is_tried_again_by_a_later_call() -> None:
    p = plan()
    lost = redis.exceptions.ConnectionError("Connection reset by peer")
    assert steps_after(p, NOT_FOUND, [lost, 5]) == [LOAD_LIBRARY, "EVALSHA", ("reply", 5)]
    assert p.traits.functions  # nothing was learnt about the server


def test_a_server_without_shebangs_is_sent_the_text_without_it() -> None:
    traits = ServerTraits()
    traits.functions = False
    p = plan(traits)
    steps = steps_after(p, SHEBANG, [5])
    assert steps == ["EVAL", ("reply", 5)]
    assert not traits.shebangs
    assert not p.source.startswith("#!") and p.source.count("\n") == script_source(
        "size.lua", False
    ).count("\n")
    assert plan(traits).head[1] == sha_of(p.source)


def test_eval_refused_for_its_shebang_is_sent_once_more_without_it() -> None:
    traits = ServerTraits()
    traits.functions = False
    steps = steps_after(plan(traits), NOSCRIPT, [SHEBANG, 5])
    assert steps == ["EVAL", "EVAL", ("reply", 5)]
    assert not traits.shebangs


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
        redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'"),
    ],
)
def test_any_other_refusal_ends_the_call_with_its_error(
    error: redis.exceptions.ResponseError,
) -> None:
    p = plan()
    with pytest.raises(type(error)) as info:
        next(p.after_refusal(p.head, error))
    assert info.value is error
    traits = ServerTraits()
    traits.functions = False
    evalsha = plan(traits)
    with pytest.raises(type(error)):
        next(evalsha.after_refusal(evalsha.head, error))


def test_an_error_of_the_retried_call_itself_ends_it() -> None:
    p = plan()
    attempts = p.after_refusal(p.head, NOT_FOUND)
    assert next(attempts) is LOAD_LIBRARY
    assert attempts.send("OK") == p.fcall_head
    wrong = redis.exceptions.ResponseError("WRONGTYPE Operation against a key")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        attempts.throw(wrong)
