"""Where one queue lives on a Redis server: the names of its keys, and what each holds.

All keys of one queue share the hash tag ``{name}``, so a Redis Cluster keeps them in one slot
(a name that starts with ``}`` has its keys under ``dq!{=}name:`` instead)::

    dq:{name}:items       list (FIFO/LIFO; items enter at the left) or zset (priority)
    dq:{name}:meta        hash: counters and flags ("shutdown", "unfinished", ...; lib.lua)
    dq:{name}:notfull     list: token "there may be room" (blocked producers)
    dq:{name}:joined      list: token "no task is unfinished" (join)
    dq:{name}:avail       list: token "there may be an item" (blocked consumers)
    dq:{name}:shutdown    list: the shutdown token (everyone blocked)
    dq:{name}:leases      zset: lease token ("item id:stamp") -> deadline, server time in ms
    dq:{name}:payloads    hash: item id -> raw value of a leased, redelivered or dead item
    dq:{name}:deliveries  hash: item id -> times delivered
    dq:{name}:dead        list: item ids of dead letters, newest at the left
    dq:{name}:errors      hash: item id -> why it is a dead letter
    dq:{name}:sched       zset: items put with a delay -> due time, server time in ms
    dq:{name}:dedup       zset: de-duplication key -> end of its window, server time in ms
    dq:{name}:rate        zset: one member per item taken -> when, server time in ms
    dq:{name}:r:ID        string: the reply of the call with request id ID, for a retry (60 s)
"""

from __future__ import annotations

from ..base import Kind

ROLES = (
    "items",
    "meta",
    "notfull",
    "joined",
    "avail",
    "shutdown",
    "leases",
    "payloads",
    "deliveries",
    "dead",
    "errors",
    "sched",
    "dedup",
    "rate",
)
"""The role of each key a queue keeps (every key but the per-call replies)."""


def key_prefix(name: str) -> str:
    """The start of every key of the structure called ``name`` (a queue, a deque):
    ``dq:{name}:``, whose hash tag keeps all of them in one Cluster slot."""
    if name.startswith("}"):
        # "{}" is no hash tag: Redis would hash each whole key, spreading the keys over slots.
        # Such names live under "dq!", with the tag "=" (a namespace of their own).
        return f"dq!{{=}}{name}:"
    return f"dq:{{{name}}}:"


class QueueKeys:
    """The names of one queue's keys, one attribute per role (``types``: each key and the
    Redis type it holds; ``reply``: the prefix of the per-call reply keys)."""

    def __init__(self, name: str, kind: Kind) -> None:
        prefix = key_prefix(name)
        self.items = prefix + "items"
        self.meta = prefix + "meta"
        self.notfull = prefix + "notfull"
        self.joined = prefix + "joined"
        self.avail = prefix + "avail"
        self.shutdown = prefix + "shutdown"
        self.leases = prefix + "leases"
        self.payloads = prefix + "payloads"
        self.deliveries = prefix + "deliveries"
        self.dead = prefix + "dead"
        self.errors = prefix + "errors"
        self.sched = prefix + "sched"
        self.dedup = prefix + "dedup"
        self.rate = prefix + "rate"
        self.reply = prefix + "r:"  # + a request id
        self.types = {
            self.items: "zset" if kind is Kind.PRIORITY else "list",
            self.meta: "hash",
            self.notfull: "list",
            self.joined: "list",
            self.avail: "list",
            self.shutdown: "list",
            self.leases: "zset",
            self.payloads: "hash",
            self.deliveries: "hash",
            self.dead: "list",
            self.errors: "hash",
            self.sched: "zset",
            self.dedup: "zset",
            self.rate: "zset",
        }

    def of(self, roles: tuple[str, ...]) -> tuple[str, ...]:
        """The keys playing ``roles``, in that order."""
        return tuple(getattr(self, role) for role in roles)
