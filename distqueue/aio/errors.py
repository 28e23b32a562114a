"""The exceptions of :mod:`distqueue.aio`'s queues: asyncio's and the standard library's at once.

``QueueEmpty`` is both ``asyncio.QueueEmpty`` and ``queue.Empty`` (so ``distqueue.Empty``),
``QueueFull`` both ``asyncio.QueueFull`` and ``queue.Full``, and ``QueueShutDown`` both
``asyncio.QueueShutDown`` (Python 3.13 and newer) and ``distqueue.ShutDown``: code written for
``asyncio.Queue`` and code written for distqueue's blocking queues catch them unchanged.
Everything else is raised as the blocking queues raise it (:mod:`distqueue.errors`).
"""

from __future__ import annotations

import asyncio

from ..errors import Empty, Full, ShutDown


class QueueEmpty(asyncio.QueueEmpty, Empty):
    """No item was waiting (``get_nowait``), or none came before the wait's timeout."""


class QueueFull(asyncio.QueueFull, Full):
    """There was no room (``put_nowait``), or none was made before the wait's timeout."""


if hasattr(asyncio, "QueueShutDown"):  # Python 3.13 and newer

    class QueueShutDown(asyncio.QueueShutDown, ShutDown):  # type: ignore[misc,name-defined]
        """The queue was shut down: no more puts, and no more gets once it is empty."""

else:

    class QueueShutDown(ShutDown):  # type: ignore[no-redef,misc]
        """The queue was shut down: no more puts, and no more gets once it is empty."""
