"""Every Lua script a queue runs: its file, the keys it is given, its arguments, and whether
it is wrapped to be safe to retry (see :mod:`distqueue.backends.scripts`).

This is the one place that says which key goes where: each ``.lua`` file declares the same keys,
in the same order, at its top (a test holds the two together). :func:`bind` makes the runnable
scripts of one queue for a client.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..scripts import Script, ServerTraits
from .keys import ROLES, QueueKeys


class ScriptSpec(NamedTuple):
    """One script: its file in ``lua/``, the roles of its keys (see :mod:`.keys`), what its
    arguments are (for readers; the script's header says more), and ``retry_safe``: whether a
    call carries a request id, as one more key after those, so that a retry changes nothing."""

    file: str
    keys: tuple[str, ...]
    args: str
    retry_safe: bool


_TAKE_KEYS = (
    "items",
    "meta",
    "notfull",
    "joined",
    "avail",
    "leases",
    "payloads",
    "deliveries",
    "dead",
    "errors",
    "sched",
    "rate",
)
_PUT_KEYS = ("items", "meta", "notfull", "joined", "avail", "sched")

SCRIPTS: dict[str, ScriptSpec] = {
    "put_list": ScriptSpec("put_list.lua", _PUT_KEYS, "kind maxsize ticket payload...", True),
    "put_priority": ScriptSpec(
        "put_priority.lua", _PUT_KEYS, "kind maxsize ticket (sort-key member)...", True
    ),
    "put_with": ScriptSpec(
        "put_with.lua",
        (*_PUT_KEYS, "dedup"),
        "kind maxsize ticket in|at ms dedup-key dedup-ms value...",
        True,
    ),
    "limits": ScriptSpec(
        "limits.lua", ("meta", "rate", "avail"), "set rate per-ms conc | pause ms", True
    ),
    "take": ScriptSpec("take.lua", _TAKE_KEYS, "kind n lease-ms max-deliveries", True),
    "task_done": ScriptSpec("task_done.lua", ("meta", "joined"), "", True),
    "shutdown": ScriptSpec(
        "shutdown.lua",
        ("items", "meta", "joined", "shutdown", "payloads", "deliveries", "sched"),
        "kind immediate",
        True,
    ),
    "ack": ScriptSpec(
        "ack.lua",
        ("items", "meta", "joined", "leases", "payloads", "deliveries", "avail"),
        "kind token...",
        True,
    ),
    "nack": ScriptSpec(
        "nack.lua", ("items", "avail", "leases", "payloads"), "kind delay-ms token...", True
    ),
    "giveback": ScriptSpec(
        "giveback.lua",
        ("items", "avail", "leases", "deliveries", "payloads", "meta", "rate"),
        "kind raw|lease (value or token)...",
        True,
    ),
    "extend": ScriptSpec("extend.lua", ("leases",), "lease-ms token...", True),
    "dead": ScriptSpec(
        "dead.lua",
        ("items", "meta", "joined", "leases", "payloads", "deliveries", "dead", "errors"),
        "mode counted error (token or raw value)...",
        True,
    ),
    "dead_requeue": ScriptSpec(
        "dead_requeue.lua",
        ("items", "meta", "joined", "avail", "payloads", "deliveries", "dead", "errors"),
        "kind limit",
        True,
    ),
    "dead_purge": ScriptSpec(
        "dead_purge.lua", ("payloads", "deliveries", "dead", "errors"), "limit", True
    ),
    # run by the operator's tools (distqueue.inspection), harmless to run twice
    "dead_pick": ScriptSpec(
        "dead_pick.lua",
        ("items", "meta", "joined", "avail", "payloads", "deliveries", "dead", "errors"),
        "kind requeue|purge id...",
        False,
    ),
    # Harmless to run twice: retried as they are.
    "size": ScriptSpec("size.lua", ("items", "leases", "payloads", "meta", "sched"), "kind", False),
    "signal": ScriptSpec("signal.lua", ("meta", "shutdown"), "", False),
    "wake": ScriptSpec("wake.lua", ("avail",), "", False),
    "pass_on": ScriptSpec("pass_on.lua", ("notfull", "joined"), "which", False),
    "join_check": ScriptSpec("join_check.lua", ("meta", "joined"), "", False),
    "delete": ScriptSpec(
        "delete.lua",
        ("notfull", "joined", *(role for role in ROLES if role not in ("notfull", "joined"))),
        "",
        False,
    ),
}


def bind(client: Any, keys: QueueKeys, replica_wait: tuple[int, int] = (0, 0)) -> dict[str, Script]:
    """Every script of :data:`SCRIPTS`, ready to run through ``client`` on the queue of
    ``keys``; ``replica_wait``: the replicas that must confirm each change, and for how long
    (:attr:`~..connection.RedisOptions.replica_wait`)."""
    traits = ServerTraits()
    return {
        name: Script(
            client,
            spec.file,
            keys.of(spec.keys),
            retry_safe=spec.retry_safe,
            replica_wait=replica_wait,
            traits=traits,
        )
        for name, spec in SCRIPTS.items()
    }
