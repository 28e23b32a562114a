"""The lease bookkeeping of one memory queue: who holds which delivery, and what is dead.

An item gets an id the first time it is leased. Each delivery of it gets a **token**,
``"<item id>:<stamp>"``, whose stamp is never used twice: a token names one delivery, so only
the consumer holding the current delivery of an item can acknowledge, give back, renew or bury
it. A delivery whose lease ran out puts its element back in the queue under the same token;
until someone takes it again, the late holder may still settle it (it then leaves the queue).
A dead letter that is requeued comes back as delivery ``"<item id>:0"``.

The :class:`Ledger` stores elements as the queue stores them and never touches the queue
itself: the memory backend moves elements in and out and tells the ledger what it did. It is
not thread-safe on its own; the backend calls it with the queue's lock held.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from .base import DeadLetter, Deadline, Lease

__all__ = ["GONE", "Ledger", "item_of"]

GONE: Any = object()
"""What :meth:`Ledger.end` returns for a delivery that is no longer held."""


def item_of(token: str) -> str:
    """The item id in a lease token ``"id:stamp"``."""
    return token.partition(":")[0]


class Ledger:
    """Leases, lapsed deliveries waiting again, delivery counts and dead letters of one queue.

    ``leased``
        token -> the leased element and the deadline of its lease.
    ``waiting``
        token of a delivery whose lease ran out -> its element, back in the queue.
    ``waiting_seq``
        for a priority queue, the sequence number of such an element -> its token (a heap
        entry cannot carry the token itself without changing how it compares).
    ``deliveries``
        item id -> how many times it has been delivered.
    ``dead``
        the dead letters, oldest first: ``(item id, element, reason)``.
    """

    __slots__ = ("dead", "deliveries", "leased", "priority", "stamps", "waiting", "waiting_seq")

    def __init__(self, priority: bool) -> None:
        self.priority = priority  # elements are heap entries ``(item, sequence, ...)``
        self.leased: dict[str, tuple[Any, Deadline]] = {}
        self.waiting: dict[str, Any] = {}
        self.waiting_seq: dict[int, str] = {}
        self.deliveries: dict[str, int] = {}
        self.dead: deque[tuple[str, Any, str]] = deque()
        self.stamps = itertools.count(1)

    def clear(self) -> None:
        self.leased.clear()
        self.waiting.clear()
        self.waiting_seq.clear()
        self.deliveries.clear()
        self.dead.clear()

    # -- delivering ------------------------------------------------------------------------

    def deliver(
        self,
        lapsed: str | None,
        stored: Any,
        item: Any,
        lease_seconds: float,
        max_deliveries: int,
    ) -> Lease | None:
        """Lease ``item`` (just taken from the queue, kept here as ``stored``) to a consumer, or
        make it a dead letter.

        ``lapsed`` is the token it waited under, ``None`` for an item never leased. Returns
        the lease, or ``None`` when this delivery would pass ``max_deliveries``.
        """
        if lapsed is None:
            item_id = str(next(self.stamps))
        else:
            self.unmark(lapsed, stored)
            item_id = item_of(lapsed)
        deliveries = self.deliveries.get(item_id, 0) + 1
        if deliveries > max_deliveries:
            reason = (
                f"delivered {deliveries - 1} times and never acknowledged "
                f"(max_deliveries {max_deliveries})"
            )
            self.dead.append((item_id, stored, reason))
            return None
        self.deliveries[item_id] = deliveries
        token = f"{item_id}:{next(self.stamps)}"
        self.leased[token] = (stored, Deadline(lease_seconds))
        return Lease(token, item, deliveries)

    def mark(self, token: str, waiting: Any) -> None:
        """``waiting``, as the queue now stores it, is back in the queue as delivery ``token``."""
        self.waiting[token] = waiting
        if self.priority:
            self.waiting_seq[waiting[1]] = token

    def unmark(self, token: str, waiting: Any) -> None:
        """The element waiting as delivery ``token`` left the queue."""
        self.waiting.pop(token, None)
        if self.priority:
            self.waiting_seq.pop(waiting[1], None)

    def forget(self, token: str, element: Any) -> None:
        """An item leaves for good (``token``: its last delivery): forget all about it."""
        self.unmark(token, element)
        self.deliveries.pop(item_of(token), None)

    # -- leases running out ----------------------------------------------------------------

    def lapsed(self) -> list[tuple[str, Any]]:
        """End the leases that ran out; their tokens and elements, the latest-ending first."""
        now = time.monotonic()
        ended = sorted(
            (
                (deadline.at, token)
                for token, (_, deadline) in self.leased.items()
                if deadline.at is not None and deadline.at <= now
            ),
            reverse=True,
        )
        return [(token, self.leased.pop(token)[0]) for _, token in ended]

    def until_next_lapse(self) -> float | None:
        """Seconds until the earliest lease runs out (at least 1 ms); ``None`` with no lease."""
        ends = [deadline.at for _, deadline in self.leased.values() if deadline.at is not None]
        if not ends:
            return None
        return max(0.001, min(ends) - time.monotonic())

    # -- settling --------------------------------------------------------------------------

    def end(self, token: str) -> Any:
        """End the lease ``token`` while it is held; its element, else :data:`GONE`."""
        held = self.leased.pop(token, None)
        return GONE if held is None else held[0]

    def renew(self, token: str, seconds: float) -> bool:
        """Let the lease ``token`` run ``seconds`` from now; ``False`` when it is not held."""
        held = self.leased.get(token)
        if held is None:
            return False
        self.leased[token] = (held[0], Deadline(seconds))
        return True

    def bury(self, token: str, element: Any, reason: str) -> None:
        self.dead.append((item_of(token), element, reason))

    # -- dead letters ----------------------------------------------------------------------

    def letters(self, limit: int, item: Any) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters; ``item`` turns an element into its item."""
        return [
            DeadLetter(
                id=item_id,
                item=item(element),
                payload=None,
                deliveries=self.deliveries.get(item_id, 0),
                error=reason,
            )
            for item_id, element, reason in itertools.islice(self.dead, limit)
        ]

    def raise_dead(self, limit: int) -> list[tuple[str, Any]]:
        """Take up to ``limit`` dead letters, oldest first, to go back in the queue: each as
        delivery ``"<item id>:0"`` with its count of deliveries back at zero."""
        raised: list[tuple[str, Any]] = []
        while self.dead and len(raised) < limit:
            item_id, element, _ = self.dead.popleft()
            self.deliveries[item_id] = 0
            raised.append((f"{item_id}:0", element))
        return raised

    def purge(self, limit: int) -> int:
        """Delete up to ``limit`` dead letters for good, oldest first."""
        purged = 0
        while self.dead and purged < limit:
            item_id, _, _ = self.dead.popleft()
            self.deliveries.pop(item_id, None)
            purged += 1
        return purged
