"""distqueue for asyncio code: ``asyncio.Queue``'s interface and semantics, across processes
and machines, on the same queues as :mod:`distqueue`'s blocking classes (same URL and name,
same queue).

::

    import distqueue.aio

    async with distqueue.aio.Queue(url="redis://localhost:6379/0", name="jobs") as jobs:
        await jobs.put({"resize": "cat.jpg"})
        item = await jobs.get()
        jobs.task_done()
        await jobs.join()

See :mod:`distqueue.aio.queue` for what awaits and what does not, and
:mod:`distqueue.aio.cache` for the cache.
"""

from .cache import Cache
from .errors import QueueEmpty, QueueFull, QueueShutDown
from .leases import Message
from .queue import LifoQueue, PriorityQueue, Queue

__all__ = [
    "Cache",
    "LifoQueue",
    "Message",
    "PriorityQueue",
    "Queue",
    "QueueEmpty",
    "QueueFull",
    "QueueShutDown",
]
