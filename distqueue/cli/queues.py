"""The commands that look at queues and steer them: queues, stats, workers, peek, put, get,
purge, delete (dead letters: :mod:`.dead`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import Empty
from ..inspection import Inspector, QueueFigures, maxsize_of, show
from ..queue import LifoQueue, PriorityQueue, Queue
from ..sampling import Sampler, count_workers
from .common import entry_for, json_option, need_url, queue_option, url_option
from .output import Progress, age, print_json, table

_KINDS: dict[str, type[Queue[Any]]] = {"fifo": Queue, "lifo": LifoQueue, "priority": PriorityQueue}


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "queues",
        help="list the queues on a server, with their kinds and settings",
        description="List the queues the server's registry knows (every queue a program "
        "opened), with kind, maxsize, settings and current figures.",
    )
    url_option(p)
    json_option(p)
    p.add_argument("--all", action="store_true", help="also list queues whose keys are all gone")
    p.set_defaults(handler=queues)

    p = commands.add_parser(
        "stats",
        help="waiting, in flight, dead, unfinished, oldest age, put/get rates",
        description="Figures of one queue (--queue) or of every registered queue. Rates and "
        "the oldest waiting item's age are measured by sampling: over --window seconds "
        "(default 1), or over the last minute with --watch.",
    )
    url_option(p)
    json_option(p)
    queue_option(p, required=False)
    p.add_argument(
        "--window",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="sample twice, this far apart, for rates (%(default)s; 0: no rates)",
    )
    p.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=float,
        metavar="SECONDS",
        help="print again every SECONDS (2) until Ctrl-C, rates over the last minute",
    )
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)  # watch this many times
    p.set_defaults(handler=stats)

    p = commands.add_parser(
        "workers",
        help="list the live workers",
        description="List the workers whose heartbeat has not run out: host, pid, queue, "
        "concurrency, started, processed, failed and the items in hand.",
    )
    url_option(p)
    json_option(p)
    p.add_argument("--queue", "-q", help="only the workers of this queue")
    p.set_defaults(handler=workers)

    p = commands.add_parser(
        "peek",
        help="show waiting items without taking them",
        description="Show waiting items in the order get() hands them out, without taking "
        "them. Items are decoded by the safe JSON serializer only.",
    )
    url_option(p)
    json_option(p)
    queue_option(p)
    p.add_argument("--offset", type=int, default=0, help="skip this many (%(default)s)")
    p.add_argument("--limit", "-n", type=int, default=20, help="at most (%(default)s)")
    p.add_argument("--search", help="only items whose text contains this (case-insensitive)")
    p.set_defaults(handler=peek)

    p = commands.add_parser(
        "put",
        help="put items given as JSON",
        description="Put items on a queue: each ITEM is JSON ('{\"a\": 1}', '42', "
        "'\"text\"'), or with --text taken as a string; '-' reads one item per line from "
        "stdin. All the items go in one atomic put_many.",
    )
    url_option(p)
    queue_option(p)
    p.add_argument("items", nargs="+", metavar="ITEM")
    p.add_argument("--text", action="store_true", help="take each ITEM as a string")
    p.add_argument("--timeout", type=float, default=5.0, help="wait for room (%(default)s s)")
    p.set_defaults(handler=put)

    p = commands.add_parser(
        "get",
        help="take items and print them (they count as done)",
        description="Take up to --count items off a queue, print them and count them done "
        "(task_done). They leave the queue for good.",
    )
    url_option(p)
    json_option(p)
    queue_option(p)
    p.add_argument("--count", "-n", type=int, default=1, help="at most (%(default)s)")
    p.add_argument("--timeout", type=float, default=0.0, help="wait for one (%(default)s s)")
    p.set_defaults(handler=get)

    p = commands.add_parser(
        "purge",
        help="remove every waiting item (needs --yes)",
        description="Remove every item waiting now, counting each as done. Items in flight "
        "and dead letters stay.",
    )
    url_option(p)
    queue_option(p)
    p.add_argument("--yes", action="store_true", help="yes, remove them")
    p.add_argument("--progress", action="store_true", help="show progress even off a terminal")
    p.set_defaults(handler=purge)

    p = commands.add_parser(
        "delete",
        help="delete a queue and all it holds (needs --yes)",
        description="Delete a queue for everyone: waiting items, leases, dead letters, "
        "counters; and forget it in the registry.",
    )
    url_option(p)
    queue_option(p)
    p.add_argument("--yes", action="store_true", help="yes, delete it")
    p.set_defaults(handler=delete)


# -- helpers -------------------------------------------------------------------------------


def inspector_for(args: argparse.Namespace) -> Inspector:
    return Inspector(need_url(args))


def _maxsize_text(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "nan"
    return value if value else None


def _figures_table(found: list[QueueFigures]) -> None:
    table(
        [
            "QUEUE",
            "KIND",
            "WAITING",
            "IN FLIGHT",
            "DEAD",
            "UNFINISHED",
            "OLDEST",
            "PUT/S",
            "GET/S",
            "WORKERS",
            "STATE",
        ],
        [
            [
                f.name,
                f.kind,
                f.waiting,
                f.in_flight,
                f.dead,
                f.unfinished,
                age(f.oldest_age),
                f.put_rate,
                f.get_rate,
                f.workers,
                _state(f),
            ]
            for f in found
        ],
    )


def _state(f: QueueFigures) -> str:
    if f.error:
        return f.error
    if not f.exists:
        return "gone"
    return "shut down" if f.shut_down else "open"


# -- commands ------------------------------------------------------------------------------


def queues(args: argparse.Namespace) -> int:
    with inspector_for(args) as inspector:
        entries = inspector.registry.queues()
        found = {f.name: f for f in inspector.figures(entries)}
    rows = [(e, found[e.name]) for e in entries if args.all or found[e.name].exists]
    if args.json:
        print_json([{**e.as_dict(), "figures": f.as_dict()} for e, f in rows])
        return 0
    if not rows:
        print("no queues registered on this server (a queue is registered when opened)")
        return 0
    table(
        [
            "QUEUE",
            "KIND",
            "MAXSIZE",
            "VISIBILITY",
            "MAX DELIVERIES",
            "SERIALIZER",
            "WAITING",
            "STATE",
        ],
        [
            [
                e.name,
                ("simple " if e.simple else "") + e.kind if e.readable else "?",
                _maxsize_text(maxsize_of(e)) if e.readable else None,
                e.visibility_timeout,
                e.max_deliveries,
                e.serializer if e.readable else None,
                f.waiting,
                _state(f),
            ]
            for e, f in rows
        ],
    )
    return 0


def stats(args: argparse.Namespace) -> int:
    sampler = Sampler()
    with inspector_for(args) as inspector:

        def read() -> list[QueueFigures]:
            if args.queue:
                entries = [entry_for(inspector.registry, args)]
            else:
                entries = inspector.registry.queues()
            found = inspector.figures(entries)
            count_workers(found, inspector.registry)
            sampler.observe(found)
            return found

        if args.watch is None:
            found = read()
            if args.window > 0:
                time.sleep(args.window)
                found = read()
            _print_stats(args, found)
            return 0
        shown = 0
        try:
            while args.count is None or shown < args.count:
                found = read()
                if not args.json and sys.stdout.isatty():
                    print("\033[H\033[J", end="")
                _print_stats(args, found)
                sys.stdout.flush()
                shown += 1
                if args.count is None or shown < args.count:
                    time.sleep(args.watch)
        except KeyboardInterrupt:
            pass
    return 0


def _print_stats(args: argparse.Namespace, found: list[QueueFigures]) -> None:
    if args.json:
        if args.queue and args.watch is None:
            print_json(found[0].as_dict())
        else:
            print_json([f.as_dict() for f in found])
    else:
        _figures_table(found)


def workers(args: argparse.Namespace) -> int:
    with inspector_for(args) as inspector:
        found = inspector.registry.workers()
        now = inspector.server_time()
    if args.queue:
        found = [w for w in found if w.queue == args.queue]
    if args.json:
        print_json([w.as_dict() for w in found])
        return 0
    if not found:
        print("no live workers")
        return 0
    table(
        ["WORKER", "HOST", "PID", "QUEUE", "THREADS", "UP", "PROCESSED", "FAILED", "IN HAND"],
        [
            [
                w.id,
                w.host,
                w.pid,
                w.queue,
                w.concurrency,
                age(None if w.started is None else now - w.started),
                w.processed,
                w.failed,
                w.error or ", ".join(str(task.get("id")) for task in w.current),
            ]
            for w in found
        ],
    )
    return 0


def peek(args: argparse.Namespace) -> int:
    with inspector_for(args) as inspector:
        entry = entry_for(inspector.registry, args)
        items = inspector.peek(entry, args.offset, args.limit, args.search)
    if args.json:
        print_json(
            [{"position": i.position, "item": i.text, "redelivered": i.redelivered} for i in items]
        )
        return 0
    table(
        ["#", "ITEM", "REDELIVERED"],
        [[i.position, i.text, i.redelivered] for i in items],
    )
    return 0


def _parse_items(args: argparse.Namespace) -> list[Any]:
    texts: list[str] = []
    for item in args.items:
        if item == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            texts.append(item)
    if args.text:
        return list(texts)
    items = []
    for text in texts:
        try:
            items.append(json.loads(text))
        except ValueError:
            raise ValueError(
                f"{text[:40]!r} is not JSON: quote strings ('\"text\"') or give --text"
            ) from None
    return items


def put(args: argparse.Namespace) -> int:
    items = _parse_items(args)
    with inspector_for(args) as inspector:
        entry = entry_for(inspector.registry, args)
        if entry.serializer != "json":
            raise ValueError(
                f"queue {entry.name!r} uses the {entry.serializer} serializer: the command "
                "line puts items with the JSON serializer only"
            )
        queue = _KINDS[entry.kind](maxsize_of(entry), url=inspector.url, name=entry.name)
        try:
            queue.put_many(items, timeout=args.timeout)
        finally:
            queue.close()
    print(f"put {len(items)} item(s) on {entry.name!r}")
    return 0


def get(args: argparse.Namespace) -> int:
    with inspector_for(args) as inspector:
        entry = entry_for(inspector.registry, args)
        queue = inspector.open(entry, leased=False)
        try:
            try:
                items = queue.get_many(args.count, timeout=args.timeout)
            except Empty:
                items = []
            for _ in items:
                queue.task_done()
        finally:
            queue.close()
    texts = [
        show(item, entry.serializer) if isinstance(item, bytes) and inspector.shared else repr(item)
        for item in items
    ]
    if args.json:
        print_json(texts)
    else:
        for text in texts:
            print(text)
    if not items:
        print(f"queue {entry.name!r} is empty", file=sys.stderr)
        return 3
    return 0


def confirm(args: argparse.Namespace, what: str) -> None:
    if not args.yes:
        raise ValueError(f"this would {what}: add --yes to go ahead")


def purge(args: argparse.Namespace) -> int:
    confirm(args, f"remove every item waiting on {args.queue!r}")
    with inspector_for(args) as inspector:
        entry = entry_for(inspector.registry, args)
        progress = Progress("purging", force=args.progress)
        done = inspector.purge_waiting(entry, progress)
        progress.finish()
    print(f"purged {done} waiting item(s) from {entry.name!r}")
    return 0


def delete(args: argparse.Namespace) -> int:
    confirm(args, f"delete queue {args.queue!r} and everything it holds, for everyone")
    with inspector_for(args) as inspector:
        entry = entry_for(inspector.registry, args)
        inspector.delete(entry)
    print(f"deleted queue {entry.name!r}")
    return 0
