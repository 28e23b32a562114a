"""distqueue: the standard library's queue module, across processes and machines.

Swap ``import queue`` for ``import distqueue``, give a URL, and producer/consumer code runs
unchanged on Redis; with no URL it runs in memory, exactly like :mod:`queue`.
"""

from .errors import (
    BackendConnectionError,
    BackendError,
    DeserializationError,
    DistQueueError,
    Empty,
    Full,
    SerializationError,
    ShutDown,
    WrongTypeError,
)
from .executor import Executor
from .queue import LifoQueue, PriorityQueue, Queue, SimpleQueue

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "DeserializationError",
    "DistQueueError",
    "Empty",
    "Executor",
    "Full",
    "LifoQueue",
    "PriorityQueue",
    "Queue",
    "SerializationError",
    "ShutDown",
    "SimpleQueue",
    "WrongTypeError",
]

__version__ = "0.1.0"
