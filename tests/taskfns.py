"""Functions that tests run on workers; importable by worker processes (tests/ on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import distqueue


class CustomError(Exception):
    pass


def add(a: Any, b: Any) -> Any:
    return a + b


def echo(*args: Any, **kwargs: Any) -> Any:
    return [args, kwargs]


def fail(message: str) -> None:
    raise ValueError(message)


def fail_custom(message: str) -> None:
    raise CustomError(message)


def unserializable_result() -> object:
    return object()


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def pid() -> int:
    return os.getpid()


def record(item: Any) -> None:
    """Worker function: append ``item`` to the Redis list named by $RECORD_KEY at $RECORD_URL."""
    import redis

    client = redis.Redis.from_url(os.environ["RECORD_URL"])
    try:
        if isinstance(item, dict) and item.get("fail"):
            raise RuntimeError(f"failing on purpose: {item['fail']}")
        if isinstance(item, dict) and item.get("sleep"):
            time.sleep(item["sleep"])
        client.rpush(os.environ["RECORD_KEY"], repr(item))
    finally:
        client.close()


_record_clients: dict[str, Any] = {}


def _record_client() -> Any:
    """One Redis client per process for the recording functions, made on first use."""
    import redis

    url = os.environ["RECORD_URL"]
    client = _record_clients.get(url)
    if client is None:
        client = _record_clients[url] = redis.Redis.from_url(url)
    return client


def record_start_end(item: Any) -> None:
    """Worker function: record ``[pid, item]`` (JSON) when the work on ``item`` starts and ends.

    Appends to the Redis lists ``$RECORD_KEY:start`` and ``$RECORD_KEY:end`` at $RECORD_URL; in
    between, sleeps ``item["sleep"]`` seconds for a dict item, else ``$RECORD_PAUSE`` (default
    0). An item with a start and no end is in hand, or was in the hands of a process that died.
    """
    client = _record_client()
    key = os.environ["RECORD_KEY"]
    entry = json.dumps([os.getpid(), item])
    client.rpush(f"{key}:start", entry)
    if isinstance(item, dict) and item.get("sleep"):
        time.sleep(item["sleep"])
    else:
        time.sleep(float(os.environ.get("RECORD_PAUSE", "0")))
    client.rpush(f"{key}:end", entry)


def fail_with_attempt(item: Any) -> None:
    """Worker function: always raise ``RuntimeError("attempt N at ITEM")``, where N counts the
    calls for this item so far (a Redis counter ``$RECORD_KEY:attempts:ITEM`` at $RECORD_URL)."""
    client = _record_client()
    attempt = client.incr(f"{os.environ['RECORD_KEY']}:attempts:{json.dumps(item)}")
    raise RuntimeError(f"attempt {attempt} at {item!r}")


def fail_first_attempt(item: Any) -> None:
    """Worker function: raise on an item's first delivery, return on the next ones (counted as
    :func:`fail_with_attempt` counts them)."""
    client = _record_client()
    attempt = client.incr(f"{os.environ['RECORD_KEY']}:attempts:{json.dumps(item)}")
    if attempt == 1:
        raise RuntimeError(f"first attempt at {item!r}")


class CustomBaseException(BaseException):
    pass


class Unprintable(Exception):
    """An exception whose ``str()`` and ``repr()`` both raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


_BASE_EXCEPTIONS: dict[str, BaseException] = {
    "SystemExit": SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt(),
    "GeneratorExit": GeneratorExit(),
    "CustomBaseException": CustomBaseException("out of bounds"),
}


def raise_base(kind: str) -> None:
    """Raise the ``BaseException`` named ``kind`` (one of :data:`_BASE_EXCEPTIONS`)."""
    raise _BASE_EXCEPTIONS[kind]


def raise_unprintable() -> None:
    raise Unprintable("hidden")


def raise_given(exc: BaseException) -> None:
    """Raise ``exc``, which travelled as an argument (with the pickle serializer)."""
    raise exc


def raise_key_error() -> None:
    raise KeyError(("a", 1))


def raise_file_not_found(path: str) -> None:
    with open(path, encoding="utf-8"):
        pass


def raise_timeout(message: str) -> None:
    raise TimeoutError(message)


def raise_unencodable_args() -> None:
    raise ValueError(object(), "and text")


def touch(path: str) -> None:
    """Create the file at ``path``: the visible trace of a task that ran."""
    with open(path, "w", encoding="utf-8"):
        pass


@distqueue.task
def registered_double(x: int) -> int:
    return 2 * x


class Shapes:
    def area(self, side: int) -> int:
        return side * side

    @staticmethod
    @distqueue.task
    def registered_area(side: int) -> int:
        return side * side


def record_server_time(item: Any) -> None:
    """Worker function: append the Redis server's time (µs since the epoch) at $RECORD_URL to
    the list ``$RECORD_KEY:times``, so that a test counts runs by one clock."""
    client = _record_client()
    seconds, micros = client.time()
    client.rpush(f"{os.environ['RECORD_KEY']}:times", seconds * 1_000_000 + micros)


backed_off: dict[Any, list[float]] = {}
"""Per item, the monotonic times :func:`back_off_first` was called (in-process workers)."""


def back_off_first(item: Any) -> None:
    """Worker function: the first call for ``item`` asks its queue to pause for 0.3 s; later
    calls just record their time."""
    calls = backed_off.setdefault(item, [])
    calls.append(time.monotonic())
    if len(calls) == 1:
        raise distqueue.BackOff(0.3, "HTTP 429")


def back_off_task(key: str, seconds: float) -> str:
    """Executor task: the first run for ``key`` (in this process) asks for a pause."""
    calls = backed_off.setdefault(key, [])
    calls.append(time.monotonic())
    if len(calls) == 1:
        raise distqueue.BackOff(seconds)
    return key


# -- async def tasks -----------------------------------------------------------------------------


async def aadd(a: Any, b: Any) -> Any:
    await asyncio.sleep(0)
    return a + b


async def araise_base(kind: str) -> None:
    """Raise the ``BaseException`` named ``kind`` from a coroutine (``CancelledError`` too)."""
    await asyncio.sleep(0)
    if kind == "CancelledError":
        raise asyncio.CancelledError()
    raise _BASE_EXCEPTIONS[kind]


_gatherings: dict[str, tuple[asyncio.Event, list[int]]] = {}


async def meet(name: str, count: int, limit: float = 30.0) -> int:
    """Return once ``count`` calls of ``meet(name, count)`` are running at the same time on
    this event loop (so only a worker that runs them concurrently can finish any of them).

    Returns how many had arrived when it woke. Waits at most ``limit`` seconds, then raises
    ``RuntimeError`` saying how many came, so that a worker running them one at a time fails
    the test instead of hanging it.
    """
    event, arrived = _gatherings.setdefault(name, (asyncio.Event(), []))
    arrived.append(len(arrived) + 1)
    if len(arrived) >= count:
        event.set()
    try:
        await asyncio.wait_for(event.wait(), limit)
    except asyncio.TimeoutError:
        raise RuntimeError(f"only {len(arrived)} of {count} calls ran at once") from None
    return len(arrived)


async def arecord_start_end(item: Any) -> None:
    """:func:`record_start_end` as a coroutine: records through ``redis.asyncio``, waits with
    ``asyncio.sleep``."""
    client = _async_record_client()
    key = os.environ["RECORD_KEY"]
    entry = json.dumps([os.getpid(), item])
    await client.rpush(f"{key}:start", entry)
    if isinstance(item, dict) and item.get("sleep"):
        await asyncio.sleep(item["sleep"])
    else:
        await asyncio.sleep(float(os.environ.get("RECORD_PAUSE", "0")))
    await client.rpush(f"{key}:end", entry)


_async_record_clients: dict[int, Any] = {}


def _async_record_client() -> Any:
    """One ``redis.asyncio`` client per event loop, made on first use."""
    import redis.asyncio

    loop = id(asyncio.get_running_loop())
    client = _async_record_clients.get(loop)
    if client is None:
        client = _async_record_clients[loop] = redis.asyncio.Redis.from_url(
            os.environ["RECORD_URL"]
        )
    return client


async def asleep_then(seconds: float, value: Any) -> Any:
    await asyncio.sleep(seconds)
    return value


_gates: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}


async def gate(name: str) -> str:
    """Wait until the test calls :func:`open_gate` with ``name`` (in this process); return it."""
    event = asyncio.Event()
    _gates[name] = (asyncio.get_running_loop(), event)
    await event.wait()
    return name


def open_gate(name: str) -> None:
    loop, event = _gates[name]
    loop.call_soon_threadsafe(event.set)


async def aback_off_first(item: Any) -> None:
    """:func:`back_off_first` as a coroutine."""
    await asyncio.sleep(0)
    back_off_first(item)
