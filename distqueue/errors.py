"""The exceptions distqueue raises.

The tree::

    Exception
     ├── queue.Empty                 distqueue.Empty is queue.Empty itself
     ├── queue.Full                  distqueue.Full is queue.Full itself
     ├── queue.ShutDown (3.13+)      distqueue.ShutDown is queue.ShutDown on 3.13 and newer,
     │                               distqueue's own class before 3.13
     ├── BackOff                     raised BY a task, not by distqueue: "pause this queue for
     │                               a while" (a worker pauses it and gives the item back)
     └── DistQueueError              everything else distqueue raises
          ├── SerializationError     (also a TypeError) an item the serializer cannot encode;
          │                          raised before anything is written
          ├── DeserializationError   (also a ValueError) a stored payload that cannot be decoded;
          │                          names the queue and keeps the raw bytes
          ├── ValueTooLargeError     (also a ValueError) a cache value larger than the server's
          │                          item limit, with chunking turned off; nothing was written
          ├── ResultMissing          (also a LookupError) no task result under an id: it expired,
          │                          was evicted or forgotten
          ├── ResultTimeout          (also a TimeoutError) a task still pending at the deadline
          ├── TaskFailed             a task raised an exception that is not a built-in type;
          │                          carries the remote type name, message and traceback
          ├── LeaseLost              task_done() for an item whose lease ran out and which was
          │                          delivered to another consumer; nothing was counted
          └── BackendError           the storage server failed or refused a command
               ├── AuthenticationError  (also a PermissionError) the server refused the
               │                        credentials (or their rights); never retried
               ├── BackendConnectionError  (also a ConnectionError) the server is down or went
               │    │                      away, after a bounded retry
               │    └── OutcomeUnknownError  a call that changes state got no answer: it may or
               │                           may not have taken effect
               └── WrongTypeError    (also a TypeError) a key of the wrong type sits where a
                                     queue's key should be; names the key

``Empty``, ``Full`` and ``ShutDown`` are the standard library's classes so that code written as
``except queue.Empty:`` keeps working unchanged.
"""

from __future__ import annotations

import queue as _stdlib_queue

Empty = _stdlib_queue.Empty
Full = _stdlib_queue.Full

if hasattr(_stdlib_queue, "ShutDown"):  # Python 3.13 and newer
    ShutDown = _stdlib_queue.ShutDown
else:

    class ShutDown(Exception):  # type: ignore[no-redef]
        """The queue was shut down: no more puts, and no more gets once it is empty."""


class BackOff(Exception):
    """Raised by a task or worker function to pause its whole queue for ``seconds``: every
    worker on every machine stops taking items until then (see :meth:`Queue.pause`), and the
    item is given back to run again afterwards. For a service that answered "too many
    requests" (HTTP 429, often with a Retry-After). Raises ``ValueError`` for a negative or
    non-finite ``seconds``."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        if not (0 <= seconds < float("inf")):
            raise ValueError(f"BackOff needs a finite number of seconds >= 0, not {seconds!r}")
        super().__init__(seconds, reason)
        self.seconds = float(seconds)
        self.reason = reason

    def __str__(self) -> str:
        return f"back off for {self.seconds:g} s" + (f": {self.reason}" if self.reason else "")


class DistQueueError(Exception):
    """Base class of every error distqueue raises, except Empty, Full and ShutDown."""


class SerializationError(DistQueueError, TypeError):
    """An item cannot be encoded by the queue's serializer. Nothing was written."""


class DeserializationError(DistQueueError, ValueError):
    """A stored payload cannot be decoded.

    ``queue`` is the name of the queue it came from and ``payload`` the raw bytes, which were
    also moved to the queue's dead-letter list so that nothing is lost.
    """

    def __init__(self, message: str, *, queue: str | None = None, payload: bytes | None = None):
        super().__init__(message)
        self.queue = queue
        self.payload = payload


class BackendError(DistQueueError):
    """The storage server failed or refused a command."""


class BackendConnectionError(BackendError, ConnectionError):
    """The storage server cannot be reached, or went away, after a bounded retry."""


class AuthenticationError(BackendError, PermissionError):
    """The server refused the credentials given (or they lack the rights a command needs)."""


class OutcomeUnknownError(BackendConnectionError):
    """A call that changes state was sent and never answered, for longer than it may be retried:
    it may or may not have taken effect. Within the retry window a lost answer is never a
    problem: the retry returns the first outcome."""


class LeaseLost(DistQueueError):
    """``task_done()`` for an item whose lease ran out before it was acknowledged, and which was
    delivered again (to this or another consumer). Nothing was counted: the new delivery's
    ``task_done()`` counts it."""


class WrongTypeError(BackendError, TypeError):
    """A key of the wrong type sits where one of the queue's keys should be."""

    def __init__(self, message: str, *, key: str | None = None):
        super().__init__(message)
        self.key = key


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
