"""What a worker runs, what it refuses, and how a task's end travels back to its future.

An Executor and a worker thread of this process share a queue in memory and on a real
redis-server. Refused messages are checked where they end up: the queue's dead letters, with
the reason; "never ran" is checked by the trace a task leaves (a file it would create).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import taskfns
from processes import GUARD, wait_until

import distqueue
from distqueue import tasks
from distqueue.results import ResultStore
from distqueue.serializers import SignedSerializer, get_serializer
from distqueue.tasks import TaskMessage
from distqueue.worker import Worker

KEY = b"a key shared by the Executor and its workers"


@pytest.fixture(params=["memory", "redis"])
def queue_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


class Serving:
    """A task queue with a worker thread on it; ``executor(...)`` makes Executors for it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"tasks-{uuid.uuid4().hex}"
        self.queue: distqueue.Queue[Any] = distqueue.Queue(
            url=url, name=self.name, visibility_timeout=10
        )
        self.results = ResultStore(url)
        self.executors: list[distqueue.Executor] = []
        self.worker: Worker | None = None
        self.thread: threading.Thread | None = None

    def start(self, **options: Any) -> Worker:
        options.setdefault("allow", ["taskfns"])
        self.worker = Worker(self.queue, results=self.results, poll=0.1, **options)
        self.thread = threading.Thread(
            target=self.worker.run, kwargs={"handle_signals": False}, daemon=True
        )
        self.thread.start()
        return self.worker

    def executor(self, **options: Any) -> distqueue.Executor:
        executor = distqueue.Executor(url=self.url, queue=self.name, **options)
        self.executors.append(executor)
        return executor

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=True, cancel_futures=True)
        if self.worker is not None and self.thread is not None:
            self.worker.stop()
            self.thread.join(GUARD)
            assert not self.thread.is_alive(), "the worker thread did not stop"
        self.queue.delete()
        self.queue.close()
        self.results.close()


@pytest.fixture
def serving(queue_url: str) -> Iterator[Serving]:
    serving = Serving(queue_url)
    yield serving
    serving.close()


def dead_letter_errors(queue: distqueue.Queue[Any], count: int) -> list[str]:
    def enough() -> list[distqueue.DeadLetter]:
        letters = queue.dead_letters()
        return letters if len(letters) >= count else []

    letters = wait_until(
        enough,
        f"{count} dead letter(s)",
        show=queue.dead_letters,
    )
    return [letter.error or "" for letter in letters]


def push_message(serving: Serving, message: TaskMessage) -> None:
    """Put a hand-made task message on the queue, as anyone who can write to it could."""
    serving.queue.put(message.encode())


def message(
    path: str, *args: Any, serializer: str = "json", key: bytes | None = None, **kwargs: Any
) -> TaskMessage:
    return TaskMessage.build(
        uuid.uuid4().hex,
        path,
        args,
        kwargs,
        f"nobody-listens-{uuid.uuid4().hex}",
        serializer=get_serializer(serializer),
        ttl=60.0,
        key=key,
    )


# -- what submit() accepts -----------------------------------------------------------------------


class Callable_:
    def __call__(self) -> None:
        pass


@pytest.mark.parametrize(
    "fn",
    [
        len,
        os.getpid,
        print,
        str.upper,
        "text".upper,
        dict,
        taskfns.Shapes().area,
        taskfns.Shapes.area,
        functools.partial(taskfns.add, 1),
        Callable_(),
    ],
    ids=[
        "builtins.len",
        "posix.getpid",
        "print",
        "method-descriptor",
        "bound-builtin-method",
        "class",
        "bound-method",
        "unregistered-method",
        "partial",
        "callable-object",
    ],
)
def test_submit_refuses_what_is_not_a_task(fn: Callable[..., Any]) -> None:
    with (
        distqueue.Executor(url="memory://", queue=f"t-{uuid.uuid4().hex}") as executor,
        pytest.raises(ValueError, match=r"not a task|is a method"),
    ):
        executor.submit(fn)


def test_a_registered_method_is_a_task(serving: Serving) -> None:
    serving.start()
    executor = serving.executor()
    assert executor.submit(taskfns.Shapes.registered_area, 3).result(timeout=GUARD) == 9


def test_the_task_decorator_refuses_what_has_no_import_path() -> None:
    with pytest.raises(ValueError, match="lambda"):
        distqueue.task(lambda: None)
    with pytest.raises(TypeError, match="built-in"):
        distqueue.task(len)


# -- what a worker runs --------------------------------------------------------------------------


def test_a_worker_runs_registered_tasks_and_refuses_the_others(
    serving: Serving, tmp_path: Path
) -> None:
    serving.start(allow=[])  # only what @distqueue.task registered in this process
    executor = serving.executor()
    assert executor.submit(taskfns.registered_double, 21).result(timeout=GUARD) == 42
    refused = executor.submit(taskfns.touch, str(tmp_path / "ran"))
    with pytest.raises(distqueue.TaskFailed, match="not allowed") as info:
        refused.result(timeout=GUARD)
    assert info.value.exc_type == "distqueue.tasks.TaskRefused"
    [error] = dead_letter_errors(serving.queue, 1)
    assert "'taskfns:touch' is not allowed" in error
    assert not (tmp_path / "ran").exists()


def test_a_worker_allowed_one_function_refuses_its_neighbours(serving: Serving) -> None:
    serving.start(allow=["taskfns:add"])
    executor = serving.executor()
    assert executor.submit(taskfns.add, 1, 2).result(timeout=GUARD) == 3
    with pytest.raises(distqueue.TaskFailed, match="not allowed"):
        executor.submit(taskfns.echo, 1).result(timeout=GUARD)


def test_a_hostile_message_naming_os_system_never_runs(serving: Serving, tmp_path: Path) -> None:
    serving.start()
    trace = tmp_path / "owned"
    push_message(serving, message("os:system", f"touch {trace}"))
    # a name reached through an allowed module's imports is not a task of that module
    push_message(serving, message("taskfns:os.system", f"touch {trace}"))
    push_message(serving, message("taskfns:os.getpid"))
    [error] = dead_letter_errors(serving.queue, 1)
    assert "'os:system' is not allowed on this worker" in error
    executor = serving.executor()
    assert executor.submit(taskfns.add, 2, 2).result(timeout=GUARD) == 4  # it went on
    wait_until(lambda: serving.queue.unfinished_tasks == 0, "every message handled")
    assert not trace.exists(), "a hostile message ran a shell command"
    assert serving.worker is not None and serving.worker.failed == 3


def test_messages_that_are_not_tasks_become_dead_letters(serving: Serving) -> None:
    serving.start()
    good = message("taskfns:add", 1, 2).encode()
    serving.queue.put_many(
        [
            {"fn": "os:system", "args": ("id",), "kwargs": {}, "task": "x", "reply": "r"},
            {**good, "body": "not bytes"},
            {**good, "extra": 1},
            {**good, "ttl": -1},
            {**good, "serializer": "marshal"},
            {**good, "body": b"not json"},
        ]
    )
    errors = dead_letter_errors(serving.queue, 6)
    for error, expected in zip(
        errors,
        [
            "not an Executor task",
            "'body' is not bytes",
            "unknown fields ['extra']",
            "ttl must be a positive",
            "unknown serializer 'marshal'",
            "arguments cannot be decoded",
        ],
        strict=True,
    ):
        assert expected in error, (expected, error)


# -- signatures ----------------------------------------------------------------------------------


def test_a_worker_with_a_key_runs_only_messages_signed_with_it(
    serving: Serving, tmp_path: Path
) -> None:
    serving.start(signing_key=KEY)
    signed = serving.executor(signing_key=KEY)
    assert signed.submit(taskfns.add, 1, 2).result(timeout=GUARD) == 3

    unsigned = serving.executor().submit(taskfns.touch, str(tmp_path / "unsigned"))
    wrong = serving.executor(signing_key=b"another key").submit(
        taskfns.touch, str(tmp_path / "wrong")
    )
    tampered = message("taskfns:add", 1, 2, key=KEY).encode()
    tampered["body"] = get_serializer("json").dumps([[str(tmp_path / "tampered")], {}])
    tampered["fn"] = "taskfns:touch"
    serving.queue.put(tampered)

    errors = dead_letter_errors(serving.queue, 3)
    assert sorted(errors) == sorted(
        [
            "refused: unsigned task message, and this worker requires a signature",
            "refused: the task message's signature does not match this worker's key",
            "refused: the task message's signature does not match this worker's key",
        ]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # an untrusted message gets no reply: whoever wrote it is not known to be the submitter
    assert not unsigned.done() and not wrong.done()
    assert signed.submit(taskfns.add, 2, 2).result(timeout=GUARD) == 4  # it went on


def test_a_worker_without_a_key_runs_signed_messages_too(serving: Serving) -> None:
    serving.start()
    assert serving.executor(signing_key=KEY).submit(taskfns.add, 1, 1).result(timeout=GUARD) == 2


class Payload:
    """Unpickling this creates the file at ``path``: proof that a pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (taskfns.touch, (self.path,))


def test_pickle_is_refused_from_unsigned_messages_before_loading(
    serving: Serving, tmp_path: Path
) -> None:
    serving.start()
    trace = tmp_path / "unpickled"
    push_message(serving, message("taskfns:echo", Payload(str(trace)), serializer="pickle"))
    [error] = dead_letter_errors(serving.queue, 1)
    assert "pickle arguments are loaded only from signed messages" in error
    assert not trace.exists(), "an unsigned pickle was loaded"
    with pytest.raises(ValueError, match="signing_key"):
        distqueue.Executor(url=serving.url, queue=serving.name, serializer="pickle")


def test_pickle_tasks_run_when_signed(serving: Serving) -> None:
    serving.start(signing_key=KEY)
    executor = serving.executor(serializer="pickle", signing_key=KEY)
    # complex numbers and exceptions are beyond the JSON serializer: pickle carries them
    assert executor.submit(taskfns.add, 1j, 2).result(timeout=GUARD) == 2 + 1j
    [[carried], _] = executor.submit(taskfns.echo, taskfns.CustomError("x")).result(GUARD)
    assert (type(carried), carried.args) == (taskfns.CustomError, ("x",))


# -- how a task ends -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CustomBaseException"]
)
def test_a_base_exception_fails_its_task_alone(serving: Serving, kind: str) -> None:
    executor = serving.executor()
    futures: list[Future[Any]] = [
        executor.submit(taskfns.raise_base, kind),
        executor.submit(taskfns.add, 1, 2),
        executor.submit(taskfns.raise_base, kind),
        executor.submit(taskfns.add, 3, 4),
    ]
    # all four wait before the worker starts, so that it leases them in one batch
    wait_until(lambda: serving.queue.qsize() == 4, "the four tasks queued")
    serving.start(prefetch=4)
    for future in futures[0::2]:
        with pytest.raises(distqueue.TaskFailed) as info:
            future.result(timeout=GUARD)
        assert info.value.exc_type.rpartition(".")[2] == kind
        assert kind in info.value.traceback_text
    assert [future.result(timeout=GUARD) for future in futures[1::2]] == [3, 7]
    assert serving.queue.dead_letters() == []
    assert serving.thread is not None and serving.thread.is_alive()
    assert executor.submit(taskfns.add, 5, 5).result(timeout=GUARD) == 10


def test_an_exception_that_cannot_be_rendered_still_fails_its_future(serving: Serving) -> None:
    serving.start()
    with pytest.raises(distqueue.TaskFailed) as info:
        serving.executor().submit(taskfns.raise_unprintable).result(timeout=GUARD)
    assert info.value.exc_type == "taskfns.Unprintable"
    assert "str() and repr() raised" in info.value.message
    assert "raise_unprintable" in info.value.traceback_text


def test_exceptions_keep_their_args_and_os_error_fields(serving: Serving, tmp_path: Path) -> None:
    serving.start()
    executor = serving.executor()
    with pytest.raises(KeyError) as key_error:
        executor.submit(taskfns.raise_key_error).result(timeout=GUARD)
    assert key_error.value.args == (("a", 1),)

    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as not_found:
        executor.submit(taskfns.raise_file_not_found, missing).result(timeout=GUARD)
    expected = FileNotFoundError(2, os.strerror(2), missing)
    got = not_found.value
    assert (got.errno, got.strerror, got.filename, got.args) == (
        expected.errno,
        expected.strerror,
        expected.filename,
        expected.args,
    )

    # an OSError with no errno (TimeoutError("...")) keeps its message as it was
    with pytest.raises(TimeoutError) as timed_out:
        executor.submit(taskfns.raise_timeout, "the service took too long").result(timeout=GUARD)
    assert str(timed_out.value) == "the service took too long"

    # args the serializer cannot carry: the type and the message still come back
    with pytest.raises(ValueError, match="and text") as unencodable:
        executor.submit(taskfns.raise_unencodable_args).result(timeout=GUARD)
    assert "object object" in str(unencodable.value)


def test_a_result_the_serializer_cannot_carry_is_a_serialization_error(
    serving: Serving,
) -> None:
    serving.start()
    with pytest.raises(distqueue.SerializationError, match="object"):
        serving.executor().submit(taskfns.unserializable_result).result(timeout=GUARD)


def test_a_future_completes_as_usual_beside_refused_ones(serving: Serving) -> None:
    serving.start()
    executor = serving.executor()
    push_message(serving, message("os:system", "true"))
    futures = [executor.submit(taskfns.add, i, i) for i in range(20)]
    done, _ = concurrent.futures.wait(futures, timeout=GUARD)
    assert sorted(f.result() for f in done) == [2 * i for i in range(20)]


def test_task_ids_carry_their_submission_time_in_the_layout_of_a_uuid7() -> None:
    import time

    from distqueue.tasks import new_task_id, submitted_at

    before = time.time()
    ids = [new_task_id() for _ in range(10_000)]
    after = time.time()
    assert len(set(ids)) == len(ids)
    for task_id in ids[:100]:
        parsed = uuid.UUID(task_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        when = submitted_at(task_id)
        assert when is not None and before - 0.001 <= when <= after + 0.001
    assert submitted_at(uuid.uuid4().hex) is None  # an older submitter's random id
    for garbage in ("", "7" * 31, "z" * 12 + "7" + "z" * 3 + "8" + "z" * 15, "\u00e9" * 32):
        assert submitted_at(garbage) is None


class _OpensAFile:
    """Unpickling this creates the file at ``path``: a stand-in for any code a forged pickle
    could run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _forge_result(serving: Serving, value: Any, serializer: Any) -> str:
    """What someone who can write to the servers can do: take the task's id and reply queue
    from its message, store an outcome of their own, announce it. Returns the task id."""
    message = serving.queue.get(timeout=GUARD)
    task_id, reply = message["task"], message["reply"]
    forger = ResultStore(serving.url, serializer=serializer)
    try:
        forger.set_many([tasks.Outcome(task_id, value)], ttl=60)
    finally:
        forger.close()
    announcer: distqueue.Queue[Any] = distqueue.Queue(url=serving.url, name=reply)
    announcer.put(tasks.announcement(task_id))
    announcer.close()
    return str(task_id)


def test_a_forged_pickle_result_is_refused_before_it_is_loaded(
    serving: Serving, tmp_path: Path
) -> None:
    executor = serving.executor(serializer="pickle", signing_key=KEY)
    trace = tmp_path / "forged-result-ran"
    future = executor.submit(taskfns.add, 1, 2)  # no worker: the forger answers
    _forge_result(serving, _OpensAFile(str(trace)), "pickle")
    with pytest.raises(distqueue.DeserializationError, match="signature"):
        future.result(timeout=GUARD)
    assert not trace.exists(), "the forged pickle ran in the submitter"


def test_a_pickle_result_signed_with_the_key_is_taken(serving: Serving) -> None:
    # the same path as the forgery above, with the key: what tells them apart is the signature
    executor = serving.executor(serializer="pickle", signing_key=KEY)
    future = executor.submit(taskfns.add, 1, 2)
    _forge_result(serving, 3 + 0j, SignedSerializer(get_serializer("pickle"), KEY))
    assert future.result(timeout=GUARD) == 3 + 0j
