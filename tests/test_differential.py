"""Random operation sequences run against the standard library, distqueue's memory backend,
fakeredis and a real Redis server, comparing every outcome (the value returned, or the type of
the exception raised).

Only calls that never wait are generated, so no sequence can hang. Where the standard library
has a behaviour, every backend must have it too; where it has none (``put_many``, ``get_many``,
priority items it cannot order, NaN, equal items it could hand back in any order), the memory
backend is the reference and both Redis backends must agree with it. Examples are derived from
a fixed seed (``derandomize``), so a run on CI sees exactly what a run here saw.
"""

from __future__ import annotations

import queue as stdlib_queue
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distqueue

EXAMPLES = 60
"""Examples per queue kind and item pool: about 10 s for the whole file on two busy cores."""

_settings = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NAN = float("nan")

# Items of one type at a time, which the standard library's PriorityQueue orders one way only:
# no two equal items with a different repr, nothing it cannot compare.
PLAIN_POOLS = [
    st.integers(-3, 3),
    st.sampled_from(["a", "b", "ab", ""]),
    st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"])),
]
PLAIN_ITEMS = st.one_of(PLAIN_POOLS)
# Everything else: equal items of different types, NaN, zeros of both signs, values Python
# cannot compare with each other, and values it cannot order at all.
WILD_ITEMS = st.one_of(
    PLAIN_ITEMS,
    st.sampled_from(
        [
            *(1, 1.0, True, 0, 0.0, -0.0, False, NAN, float("inf"), -float("inf")),
            *(Decimal("NaN"), Decimal("1.0"), None, b"a", b"", "1", (1,), [1], (NAN, "a")),
            *((NAN, "b"), (1, None), (1, {"k": 1}), (1, {"k": 2}), {"k": 0}, (0, [1, 2])),
        ]
    ),
)

KINDS = {
    "Queue": (distqueue.Queue, stdlib_queue.Queue),
    "LifoQueue": (distqueue.LifoQueue, stdlib_queue.LifoQueue),
    "PriorityQueue": (distqueue.PriorityQueue, stdlib_queue.PriorityQueue),
    "SimpleQueue": (distqueue.SimpleQueue, stdlib_queue.SimpleQueue),
}

STDLIB_HAS_SHUTDOWN = hasattr(stdlib_queue.Queue, "shutdown")

# -- operations ------------------------------------------------------------------------------

Op = tuple[Any, ...]

_put_args = st.sampled_from(
    [
        {"block": False},
        {"block": False, "timeout": -1},
        {"block": False, "timeout": None},
        {"timeout": 0},
        {"timeout": -1},
    ]
)
_get_args = st.sampled_from(
    [
        {"block": False},
        {"block": False, "timeout": -1},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": -0.5},
    ]
)


def _operations(kind: str, items: st.SearchStrategy[Any], extended: bool) -> st.SearchStrategy[Op]:
    """One call on a queue of ``kind``; with ``extended``, also the calls the standard library
    does not have."""
    choices = [
        st.tuples(st.just("put"), items, _put_args),
        st.tuples(st.just("put_nowait"), items),
        st.tuples(st.just("get"), _get_args),
        st.tuples(st.just("get_nowait")),
        st.tuples(st.just("qsize")),
        st.tuples(st.just("empty")),
    ]
    if kind == "SimpleQueue":
        choices.append(st.tuples(st.just("put_unbounded"), items))
        return st.one_of(choices)
    choices += [
        st.tuples(st.just("put_unbounded"), items),
        st.tuples(st.just("full")),
        st.tuples(st.just("task_done")),
        st.tuples(st.just("join_now")),
        st.tuples(st.just("unfinished_tasks")),
        st.tuples(st.just("shutdown"), st.booleans()),
    ]
    if extended:
        choices += [
            st.tuples(st.just("put_many"), st.lists(items, max_size=4), _put_args),
            st.tuples(st.just("get_many"), st.integers(1, 4), _get_args),
        ]
    return st.one_of(choices)


@dataclass
class Scenario:
    kind: str
    maxsize: Any
    ops: list[Op]
    with_stdlib: bool
    outcomes: dict[str, list[str]] = field(default_factory=dict)


@st.composite
def scenarios(draw: st.DrawFn, kind: str, wild: bool, extended: bool) -> Scenario:
    if wild:
        items = WILD_ITEMS
    elif kind == "PriorityQueue":
        items = draw(st.sampled_from(PLAIN_POOLS))
    else:
        items = PLAIN_ITEMS
    maxsize = draw(st.sampled_from([0, 1, 2, 2.5, -1])) if kind != "SimpleQueue" else None
    ops = draw(st.lists(_operations(kind, items, extended), min_size=1, max_size=25))
    # The standard library's PriorityQueue raises on items it cannot compare (and then holds
    # a heap out of order), and hands back equal items in any order.
    with_stdlib = not extended and not (kind == "PriorityQueue" and wild)
    if not STDLIB_HAS_SHUTDOWN and any(op[0] == "shutdown" for op in ops):
        with_stdlib = False
    return Scenario(kind, maxsize, ops, with_stdlib)


# -- running a scenario ----------------------------------------------------------------------


def _describe(value: Any) -> str:
    """An outcome as text that tells types apart (1, 1.0 and True differ) and NaN equals NaN."""
    if isinstance(value, BaseException):
        return f"raises {type(value).__name__}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(element) for element in value)
        return f"{type(value).__name__}[{inner}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_describe(k)}: {_describe(v)}" for k, v in value.items())
        return f"dict{{{inner}}}"
    return f"{type(value).__name__}:{value!r}"


def _apply(q: Any, op: Op, stdlib: bool) -> Any:
    name = op[0]
    if name == "put":
        return q.put(op[1], **op[2])
    if name == "put_unbounded":
        # put() with block and no timeout waits only on a full queue
        if getattr(q, "maxsize", 0) > 0:
            return q.put(op[1], block=False)
        return q.put(op[1])
    if name == "put_nowait":
        return q.put_nowait(op[1])
    if name == "get":
        return q.get(**op[1])
    if name == "get_nowait":
        return q.get_nowait()
    if name == "qsize":
        return q.qsize()
    if name == "empty":
        return q.empty()
    if name == "full":
        return q.full()
    if name == "task_done":
        return q.task_done()
    if name == "join_now":
        # join(timeout=0); the standard library's join() has no timeout: it would return at
        # once exactly when no task is unfinished
        return q.unfinished_tasks == 0 if stdlib else q.join(timeout=0)
    if name == "unfinished_tasks":
        return q.unfinished_tasks
    if name == "shutdown":
        return q.shutdown(immediate=op[1])
    if name == "put_many":
        return q.put_many(op[1], **op[2])
    if name == "get_many":
        return q.get_many(op[1], **op[2])
    raise AssertionError(f"unknown operation {name}")


def _drain(q: Any) -> Iterator[Any]:
    """What is left, taken without waiting, until Empty or ShutDown."""
    for _ in range(100):
        try:
            yield q.get_nowait()
        except Exception as exc:
            yield exc
            return


def _run(q: Any, scenario: Scenario, stdlib: bool) -> list[str]:
    outcomes = []
    for op in scenario.ops:
        try:
            result: Any = _apply(q, op, stdlib)
        except Exception as exc:
            result = exc
        outcomes.append(_describe(result))
    outcomes.append("left: " + _describe(list(_drain(q))))
    if scenario.kind != "SimpleQueue":
        outcomes.append(f"unfinished: {q.unfinished_tasks}")
    return outcomes


Opener = Callable[[Any, Any, str], Any]


@pytest.fixture
def openers(redis_url: str) -> Iterator[dict[str, Opener]]:
    """Open a distqueue queue class with a maxsize on each backend under a given name."""
    import fakeredis

    fake_server = fakeredis.FakeServer()
    opened: list[Any] = []

    def on(url: str | None = None, fake: bool = False) -> Opener:
        def open_queue(cls: Any, maxsize: Any, name: str) -> Any:
            args = () if cls is distqueue.SimpleQueue else (maxsize,)
            if fake:
                client = fakeredis.FakeRedis(server=fake_server)
                q = cls(*args, name=name, client=client)
            else:
                q = cls(*args, url=url, name=name)
            opened.append(q)
            return q

        return open_queue

    yield {
        "memory": on("memory://"),
        "fakeredis": on(fake=True),
        "redis": on(redis_url),
    }
    for q in opened:
        q.delete()
        q.close()


def _check(scenario: Scenario, openers: dict[str, Opener], backends: tuple[str, ...]) -> None:
    ours, theirs = KINDS[scenario.kind]
    name = f"diff-{uuid.uuid4().hex}"
    results: dict[str, list[str]] = {}
    if scenario.with_stdlib:
        stdlib_q = theirs() if scenario.kind == "SimpleQueue" else theirs(scenario.maxsize)
        results["stdlib"] = _run(stdlib_q, scenario, stdlib=True)
    for backend in backends:
        q = openers[backend](ours, scenario.maxsize, name)
        results[backend] = _run(q, scenario, stdlib=False)
    reference = "stdlib" if scenario.with_stdlib else "memory"
    expected = results[reference]
    for backend, got in results.items():
        if got != expected:
            step = next(i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b)
            shown = "\n".join(
                f"  {'>>' if i == step else '  '} {op!r}: {reference} {expected[i]} | "
                f"{backend} {got[i]}"
                for i, op in enumerate([*scenario.ops, ("drain",), ("unfinished",)][: len(got)])
            )
            pytest.fail(
                f"{scenario.kind}(maxsize={scenario.maxsize!r}) on {backend} differs from "
                f"{reference} at step {step}:\n{shown}"
            )


ALL_BACKENDS = ("memory", "fakeredis", "redis")


@pytest.mark.parametrize("kind", list(KINDS))
def test_plain_calls_agree_with_the_stdlib_on_every_backend(
    openers: dict[str, Opener], kind: str
) -> None:
    @_settings
    @given(scenarios(kind, wild=False, extended=False))
    def run(scenario: Scenario) -> None:
        _check(scenario, openers, ALL_BACKENDS)

    run()


@pytest.mark.parametrize("kind", list(KINDS))
def test_any_items_agree_on_every_backend(openers: dict[str, Opener], kind: str) -> None:
    @_settings
    @given(scenarios(kind, wild=True, extended=False))
    def run(scenario: Scenario) -> None:
        _check(scenario, openers, ALL_BACKENDS)

    run()


@pytest.mark.parametrize("kind", ["Queue", "LifoQueue", "PriorityQueue"])
def test_batches_and_any_items_agree_between_memory_and_redis(
    openers: dict[str, Opener], kind: str
) -> None:
    @_settings
    @given(scenarios(kind, wild=True, extended=True))
    def run(scenario: Scenario) -> None:
        _check(scenario, openers, ALL_BACKENDS)

    run()
