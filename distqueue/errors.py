"""The exceptions distqueue raises.

The tree::

    Exception
     ├── queue.Empty                 distqueue.Empty is queue.Empty itself
     ├── queue.Full                  distqueue.Full is queue.Full itself
     ├── queue.ShutDown (3.13+)      distqueue.ShutDown is queue.ShutDown on 3.13 and newer,
     │                               distqueue's own class before 3.13
     └── DistQueueError              everything else distqueue raises
          ├── SerializationError     (also a TypeError) an item the serializer cannot encode;
          │                          raised before anything is written
          ├── DeserializationError   (also a ValueError) a stored payload that cannot be decoded;
          │                          names the queue and keeps the raw bytes
          └── BackendError           the storage server failed or refused a command
               ├── BackendConnectionError  (also a ConnectionError) the server is down or went
               │                           away, after a bounded retry
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
        """Raised when put() or get() is called on a queue that has been shut down."""


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


class WrongTypeError(BackendError, TypeError):
    """A key of the wrong type sits where one of the queue's keys should be."""

    def __init__(self, message: str, *, key: str | None = None):
        super().__init__(message)
        self.key = key
