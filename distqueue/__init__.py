"""distqueue: the standard library's queue module, across processes and machines.

Swap ``import queue`` for ``import distqueue``, give a URL, and producer/consumer code runs
unchanged on Redis; with no URL it runs in memory, exactly like :mod:`queue`.
"""

from .backends.base import DeadLetter, Limits
from .cache import Cache, CacheStats, cached
from .deque import Deque
from .errors import (
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackOff,
    DeserializationError,
    DistQueueError,
    Empty,
    Full,
    LeaseLost,
    OutcomeUnknownError,
    ResultMissing,
    ResultTimeout,
    SerializationError,
    ShutDown,
    TaskFailed,
    ValueTooLargeError,
    WrongTypeError,
)
from .executor import Executor, SubmitOptions
from .leases import Message
from .queue import LifoQueue, PriorityQueue, Queue, SimpleQueue
from .results import ResultStore
from .tasks import Outcome, task

__all__ = [
    "AuthenticationError",
    "BackOff",
    "BackendConnectionError",
    "BackendError",
    "Cache",
    "CacheStats",
    "DeadLetter",
    "Deque",
    "DeserializationError",
    "DistQueueError",
    "Empty",
    "Executor",
    "Full",
    "LeaseLost",
    "LifoQueue",
    "Limits",
    "Message",
    "Outcome",
    "OutcomeUnknownError",
    "PriorityQueue",
    "Queue",
    "ResultMissing",
    "ResultStore",
    "ResultTimeout",
    "SerializationError",
    "ShutDown",
    "SimpleQueue",
    "SubmitOptions",
    "TaskFailed",
    "ValueTooLargeError",
    "WrongTypeError",
    "cached",
    "task",
]

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"
