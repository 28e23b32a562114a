"""The Executor and the worker: a real concurrent.futures.Executor whose calls run elsewhere."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import taskfns
from processes import GUARD

import distqueue
from distqueue.errors import TaskFailed
from distqueue.worker import Worker


@pytest.fixture(params=["memory", "redis"])
def queue_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def executor(queue_url: str) -> Iterator[distqueue.Executor]:
    """An Executor and one worker thread serving its queue."""
    name = f"tasks-{uuid.uuid4().hex}"
    executor = distqueue.Executor(url=queue_url, queue=name)
    queue: distqueue.Queue[Any] = distqueue.Queue(url=queue_url, name=name, visibility_timeout=10)
    from distqueue.results import ResultStore

    results = ResultStore(queue_url)
    worker = Worker(queue, results=results, concurrency=2, poll=0.1, allow=["taskfns"])
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)
    worker.stop()
    thread.join(10)
    queue.delete()
    queue.close()
    results.close()


def test_submit_returns_a_future_with_the_result(executor: distqueue.Executor) -> None:
    future = executor.submit(taskfns.add, 2, 3)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=30) == 5


def test_arguments_and_results_keep_their_types(executor: distqueue.Executor) -> None:
    future = executor.submit(taskfns.echo, (1, 2), b"x", key={"a": (3,)})
    assert future.result(timeout=30) == [((1, 2), b"x"), {"key": {"a": (3,)}}]


def test_map_and_as_completed(executor: distqueue.Executor) -> None:
    assert list(executor.map(taskfns.add, range(10), range(10), timeout=60)) == [
        2 * i for i in range(10)
    ]
    futures = [executor.submit(taskfns.add, i, 1) for i in range(5)]
    done = {f.result() for f in concurrent.futures.as_completed(futures, timeout=60)}
    assert done == {1, 2, 3, 4, 5}
    finished, not_done = concurrent.futures.wait(futures, timeout=60)
    assert len(finished) == 5 and not not_done


def test_a_builtin_exception_comes_back_as_itself(executor: distqueue.Executor) -> None:
    future = executor.submit(taskfns.fail, "bad input")
    with pytest.raises(ValueError, match="bad input") as info:
        future.result(timeout=30)
    assert "taskfns.py" in info.value.remote_traceback  # type: ignore[attr-defined]


def test_another_exception_comes_back_as_task_failed(executor: distqueue.Executor) -> None:
    future = executor.submit(taskfns.fail_custom, "nope")
    with pytest.raises(TaskFailed) as info:
        future.result(timeout=30)
    assert info.value.exc_type == "taskfns.CustomError"
    assert info.value.message == "nope"
    assert "CustomError" in info.value.traceback_text


def test_a_result_the_serializer_cannot_carry_is_an_error(executor: distqueue.Executor) -> None:
    with pytest.raises((TypeError, TaskFailed)):
        executor.submit(taskfns.unserializable_result).result(timeout=30)


def test_functions_without_an_import_path_are_refused_at_submit(
    executor: distqueue.Executor,
) -> None:
    def local() -> None:
        pass

    with pytest.raises(ValueError, match="lambda"):
        executor.submit(lambda: None)
    with pytest.raises(ValueError, match="inside other functions"):
        executor.submit(local)


def test_arguments_the_serializer_cannot_carry_are_refused_at_submit(
    executor: distqueue.Executor,
) -> None:
    with pytest.raises(TypeError, match="object"):
        executor.submit(taskfns.echo, object())


def test_no_submit_after_shutdown(queue_url: str) -> None:
    executor = distqueue.Executor(url=queue_url, queue=f"t-{uuid.uuid4().hex}")
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(taskfns.add, 1, 2)


def test_shutdown_with_cancel_futures_cancels_what_no_worker_ran(queue_url: str) -> None:
    executor = distqueue.Executor(url=queue_url, queue=f"t-{uuid.uuid4().hex}")  # no worker
    futures = [executor.submit(taskfns.add, i, i) for i in range(3)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futures)


def test_the_executor_is_a_context_manager(executor: distqueue.Executor) -> None:
    results: list[Any] = []
    with executor as ex:
        results.append(ex.submit(taskfns.add, 20, 22))
    assert results[0].result(timeout=0) == 42


def test_many_calls_complete_with_their_own_results(executor: distqueue.Executor) -> None:
    futures = {i: executor.submit(taskfns.add, i, 1000) for i in range(300)}
    assert {i: f.result(timeout=60) for i, f in futures.items()} == {
        i: i + 1000 for i in range(300)
    }


def test_a_task_that_cannot_be_queued_fails_its_future() -> None:
    from servers import free_port

    executor = distqueue.Executor(url=f"redis://127.0.0.1:{free_port()}/0", queue="unreachable")
    future = executor.submit(taskfns.add, 1, 2)
    assert isinstance(future.exception(timeout=60), distqueue.BackendConnectionError)
    executor.shutdown(wait=True)


# -- awaiting futures from asyncio code ----------------------------------------------------------


def test_a_future_is_awaitable_through_wrap_future(executor: distqueue.Executor) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        seen: list[int] = []
        wrapped = asyncio.wrap_future(executor.submit(taskfns.add, 2, 3))
        wrapped.add_done_callback(lambda _: seen.append(threading.get_ident()))
        assert await wrapped == 5
        await asyncio.sleep(0)  # done callbacks are scheduled on the loop
        assert seen == [loop_thread], "an asyncio callback ran outside the loop's thread"
        with pytest.raises(ValueError, match="bad input"):
            await asyncio.wrap_future(executor.submit(taskfns.fail, "bad input"))
        many = [asyncio.wrap_future(executor.submit(taskfns.add, i, i)) for i in range(20)]
        assert await asyncio.gather(*many) == [2 * i for i in range(20)]

    asyncio.run(asyncio.wait_for(main(), GUARD))


def test_cancelling_the_awaited_wrapper_cancels_the_future(queue_url: str) -> None:
    """No worker serves this queue: the future stays pending until the wrapper is cancelled."""
    name = f"tasks-{uuid.uuid4().hex}"

    async def main() -> concurrent.futures.Future[Any]:
        with distqueue.Executor(url=queue_url, queue=name) as executor:
            future = executor.submit(taskfns.add, 1, 1)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(future), 0.1)
            assert future.cancelled()
            executor.shutdown(cancel_futures=True)
        return future

    future = asyncio.run(main())
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=0)
    with distqueue.Queue(url=queue_url, name=name) as q:
        q.delete()
