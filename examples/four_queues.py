"""The four structures side by side: FIFO, LIFO, priority queue and deque, given the same input.

    python examples/four_queues.py                                  # in memory
    python examples/four_queues.py --url redis://localhost:6379/0   # the same, on Redis
    python examples/four_queues.py 7 3 9 1                          # your own numbers

What it teaches: the order in which each structure hands back the same items.

- ``Queue`` is first in, first out (FIFO): a line at a counter.
- ``LifoQueue`` is last in, first out (LIFO): a stack of plates.
- ``PriorityQueue`` hands out the smallest item first, whatever the order they came in
  (put ``(priority, item)`` tuples to order anything).
- ``Deque`` is a double-ended queue: add and take at either end. Taken from the end it was
  filled at, it is a stack; from the other end, a line. With ``maxlen`` it keeps only the newest
  items, dropping from the opposite end.

Each line is checked against the standard library's ``queue`` and ``collections.deque``: on
Redis the order is the same as in memory.
"""

from __future__ import annotations

import argparse
import collections
import queue
import uuid

import distqueue


def drain(q: distqueue.Queue[int]) -> list[int]:
    out: list[int] = []
    while True:
        try:
            out.append(q.get_nowait())
        except distqueue.Empty:
            return out


def via_queue(cls: type[distqueue.Queue[int]], items: list[int], url: str | None) -> list[int]:
    q = cls(url=url, name=f"four-queues-{uuid.uuid4().hex[:8]}")
    try:
        for item in items:
            q.put(item)
        return drain(q)
    finally:
        if q.url != "memory://":
            q.delete()  # the example's own queue: remove it from the server
        q.close()


def via_stdlib(cls: type[queue.Queue[int]], items: list[int]) -> list[int]:
    q = cls()
    for item in items:
        q.put(item)
    return [q.get_nowait() for _ in items]


def via_deque(
    items: list[int], url: str | None, *, left: bool, maxlen: int | None = None
) -> list[int]:
    """Fill a Deque with append(), then empty it with popleft() (left) or pop()."""
    d: distqueue.Deque[int] = distqueue.Deque(
        maxlen=maxlen, url=url, name=f"four-queues-{uuid.uuid4().hex[:8]}"
    )
    try:
        for item in items:
            d.append(item)
        return [d.popleft() if left else d.pop() for _ in range(len(d))]
    finally:
        d.delete()  # the example's own deque: remove it from the server
        d.close()


def deque_stdlib(items: list[int], *, left: bool, maxlen: int | None = None) -> list[int]:
    d = collections.deque(items, maxlen)
    return [d.popleft() if left else d.pop() for _ in range(len(d))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", nargs="*", type=int, default=[5, 1, 4, 2, 3])
    parser.add_argument("--url", help="redis://HOST:6379/0 (default: memory)")
    args = parser.parse_args()
    items: list[int] = args.items
    keep = max(1, len(items) - 2)

    print(f"on {args.url or 'memory://'}, the same input to each: {items}")
    rows = [
        (
            "Queue          FIFO     get()",
            via_queue(distqueue.Queue, items, args.url),
            via_stdlib(queue.Queue, items),
        ),
        (
            "LifoQueue      LIFO     get()",
            via_queue(distqueue.LifoQueue, items, args.url),
            via_stdlib(queue.LifoQueue, items),
        ),
        (
            "PriorityQueue  lowest   get()",
            via_queue(distqueue.PriorityQueue, items, args.url),
            via_stdlib(queue.PriorityQueue, items),
        ),
        (
            "Deque          append + popleft()",
            via_deque(items, args.url, left=True),
            deque_stdlib(items, left=True),
        ),
        (
            "Deque          append + pop()",
            via_deque(items, args.url, left=False),
            deque_stdlib(items, left=False),
        ),
        (
            f"Deque(maxlen={keep}) append + popleft()",
            via_deque(items, args.url, left=True, maxlen=keep),
            deque_stdlib(items, left=True, maxlen=keep),
        ),
    ]
    width = max(len(label) for label, _, _ in rows)
    for label, got, expected in rows:
        print(f"{label:<{width}}  {got}")
        if got != expected:
            raise SystemExit(
                f"FAILED: {label.split()[0]} gave {got}, the standard library {expected}"
            )
    print("every order is the standard library's")


if __name__ == "__main__":
    main()
