"""The exceptions of the cache and result layer.

They join distqueue's tree (:mod:`distqueue.errors`) under ``DistQueueError``::

    DistQueueError
     ├── ValueTooLargeError     (also a ValueError) a value larger than the server's item limit,
     │                          with chunking turned off; raised before anything is written
     ├── ResultMissing          (also a LookupError) no result and no pending task under an id:
     │                          it expired, was evicted, was forgotten or was never expected
     ├── ResultTimeout          (also a TimeoutError) the task is still pending at the deadline
     └── TaskFailed             the task raised; carries the remote type name, message and
                                traceback text

Server failures are the existing ``BackendConnectionError`` (the server cannot be reached) and
``BackendError`` (it refused a command); a counter command on a value that is not a counter
raises the existing ``WrongTypeError``.
"""

from __future__ import annotations

from ..errors import DistQueueError


class ValueTooLargeError(DistQueueError, ValueError):
    """A value does not fit in one item of the server and chunking is turned off.

    ``size`` is the encoded size in bytes and ``limit`` the largest size that fits. Nothing was
    written.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class ResultMissing(DistQueueError, LookupError):
    """There is no result and no pending task under ``task_id``.

    The result expired (its TTL passed), was evicted by the server (memcached drops items when
    it runs out of memory, or a chunk of a large result), was deleted with ``forget()``, or the
    id was never marked pending.
    """

    def __init__(self, message: str, *, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class ResultTimeout(DistQueueError, TimeoutError):
    """The task was still pending when the wait's timeout passed."""

    def __init__(self, message: str, *, task_id: str, timeout: float) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.timeout = timeout


class TaskFailed(DistQueueError):
    """The task raised an exception in the process that ran it.

    ``exc_type`` is the name of the exception's type there (``"ValueError"``), ``message`` its
    ``str()``, ``traceback_text`` the formatted traceback.
    """

    def __init__(self, task_id: str, exc_type: str, message: str, traceback_text: str) -> None:
        super().__init__(f"task {task_id} raised {exc_type}: {message}")
        self.task_id = task_id
        self.exc_type = exc_type
        self.message = message
        self.traceback_text = traceback_text
