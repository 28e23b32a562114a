"""The ``distqueue`` command line (also ``python -m distqueue``).

    distqueue worker [--url URL] [--queue NAME] [--results URL] [--concurrency N]
                     [--asyncio [--grace SECONDS]] [--allow MODULE[:FUNCTION]]...
                     [--signing-key-file PATH | --signing-key-env VAR] [MODULE:FUNCTION]
    distqueue dead {list,requeue,purge} [--url URL] [--queue NAME] [--limit N]
    distqueue stats [--url URL] [--queue NAME]

``--url`` defaults to ``$DISTQUEUE_URL``. A worker without ``MODULE:FUNCTION`` runs the tasks
that :class:`distqueue.Executor` submits, of the modules and functions given with ``--allow``
(default: ``$DISTQUEUE_ALLOW``, comma-separated) and those they register with
``@distqueue.task``; with it, calls that function on each item. With a signing key (read from a
file, surrounding whitespace stripped, or from an environment variable), the worker runs only
task messages signed with it. With ``--asyncio`` the items run on an event loop, ``async def``
functions as up to ``--concurrency`` coroutines at once (see :mod:`distqueue.aio.worker`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import tasks
from .errors import DistQueueError
from .executor import DEFAULT_QUEUE
from .queue import LifoQueue, PriorityQueue, Queue
from .results import ResultStore
from .url import ENV_VAR, resolve_url, results_url_for
from .worker import Worker

ALLOW_ENV_VAR = "DISTQUEUE_ALLOW"

_KINDS: dict[str, type[Queue[Any]]] = {"fifo": Queue, "lifo": LifoQueue, "priority": PriorityQueue}


def _queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get(ENV_VAR), help=f"queue URL (default: ${ENV_VAR})"
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (%(default)s)")
    parser.add_argument(
        "--kind", choices=sorted(_KINDS), default="fifo", help="queue kind (%(default)s)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distqueue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run tasks or a function on a queue's items")
    _queue_options(worker)
    worker.add_argument("function", nargs="?", help="MODULE:FUNCTION to call with each item")
    worker.add_argument("--results", help="results store URL (default: the queue's URL)")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="threads; with --asyncio, items running at once (1; with --asyncio, 100)",
    )
    worker.add_argument(
        "--asyncio",
        action="store_true",
        help="run the items on an event loop: async def tasks as concurrent coroutines",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --asyncio: after a stop, coroutines still running after this long are "
        "cancelled and their items given back (default: wait for them)",
    )
    worker.add_argument(
        "--allow",
        action="append",
        metavar="MODULE[:FUNCTION]",
        help=f"tasks this worker may run: every function of a module, or one function; "
        f"repeat for more (default: ${ALLOW_ENV_VAR}, comma-separated)",
    )
    key = worker.add_mutually_exclusive_group()
    key.add_argument(
        "--signing-key-file", metavar="PATH", help="run only task messages signed with this key"
    )
    key.add_argument(
        "--signing-key-env", metavar="VAR", help="the same, the key in environment variable VAR"
    )
    worker.add_argument(
        "--prefetch",
        type=int,
        default=4,
        help="items a thread leases at once when that many wait (%(default)s)",
    )
    worker.add_argument(
        "--visibility-timeout",
        type=float,
        default=30.0,
        help="seconds before an item held by a dead worker is delivered again (%(default)s)",
    )
    worker.add_argument(
        "--max-deliveries",
        type=int,
        default=5,
        help="deliveries before an item becomes a dead letter (%(default)s)",
    )

    dead = commands.add_parser("dead", help="list, requeue or purge dead letters")
    dead.add_argument("action", choices=["list", "requeue", "purge"])
    _queue_options(dead)
    dead.add_argument("--limit", type=int, default=None, help="at most this many (all)")

    stats = commands.add_parser("stats", help="print a queue's counts as JSON")
    _queue_options(stats)
    return parser


def _open(args: argparse.Namespace, **options: Any) -> Queue[Any]:
    if not args.url:
        raise SystemExit(f"distqueue: give --url or set ${ENV_VAR}")
    return _KINDS[args.kind](url=args.url, name=args.queue, **options)


def _signing_key(args: argparse.Namespace) -> bytes | None:
    if args.signing_key_file:
        try:
            with open(args.signing_key_file, "rb") as file:
                key = file.read().strip()
        except OSError as exc:
            raise ValueError(f"cannot read the signing key file: {exc}") from exc
        if not key:
            raise ValueError(f"the signing key file {args.signing_key_file!r} is empty")
        return key
    if args.signing_key_env:
        value = os.environ.get(args.signing_key_env)
        if not value:
            raise ValueError(f"the environment variable {args.signing_key_env} is unset or empty")
        return value.encode("utf-8")
    return None


def _worker(args: argparse.Namespace) -> int:
    if args.grace is not None and not args.asyncio:
        raise ValueError("--grace is for --asyncio workers (a thread worker lets its items finish)")
    sys.path.insert(0, os.getcwd())  # find the user's modules, as `python -m` would
    function = None
    allow = tasks.Allowlist(())
    if args.function:
        function = tasks.Allowlist([args.function]).resolve(args.function)
    else:
        entries = args.allow or os.environ.get(ALLOW_ENV_VAR, "").split(",")
        allow = tasks.Allowlist(e for entry in entries for e in entry.split(",") if e.strip())
        allow.import_all()
        if not allow:
            raise ValueError(
                "a worker for Executor tasks needs --allow MODULE[:FUNCTION] (or "
                f"${ALLOW_ENV_VAR}): it runs only the tasks it is allowed to"
            )
    signing_key = _signing_key(args)
    queue = _open(
        args,
        visibility_timeout=args.visibility_timeout,
        max_deliveries=args.max_deliveries,
    )
    results = (
        None if function else ResultStore(args.results or results_url_for(resolve_url(args.url)))
    )
    options: dict[str, Any] = {
        "results": results,
        "prefetch": args.prefetch,
        "allow": allow,
        "signing_key": signing_key,
    }
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    worker: Worker
    if args.asyncio:
        from .aio.worker import AsyncWorker

        worker = AsyncWorker(queue, function, grace=args.grace, **options)
    else:
        worker = Worker(queue, function, **options)
    try:
        return worker.run()
    finally:
        queue.close()
        if results is not None:
            results.close()


def _dead(args: argparse.Namespace) -> int:
    queue = _open(args)
    try:
        if args.action == "list":
            for letter in queue.dead_letters(args.limit or 1000):
                print(
                    json.dumps(
                        {
                            "id": letter.id,
                            "item": repr(letter.item),
                            "payload": None
                            if letter.payload is None
                            else letter.payload.decode("utf-8", "replace"),
                            "deliveries": letter.deliveries,
                            "error": letter.error,
                        },
                        ensure_ascii=False,
                    )
                )
        elif args.action == "requeue":
            print(f"requeued {queue.requeue_dead(args.limit)} dead letter(s)")
        else:
            print(f"purged {queue.purge_dead(args.limit)} dead letter(s)")
    finally:
        queue.close()
    return 0


def _stats(args: argparse.Namespace) -> int:
    queue = _open(args)
    try:
        counts = {
            "queue": queue.name,
            "waiting": queue.qsize(),
            "in_flight": queue.in_flight(),
            "unfinished": queue.unfinished_tasks,
            "dead": len(queue.dead_letters(100_000)),
            "shut_down": queue.is_shutdown,
        }
    finally:
        queue.close()
    print(json.dumps(counts))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers = {"worker": _worker, "dead": _dead, "stats": _stats}
    try:
        return handlers[args.command](args)
    except (DistQueueError, ValueError) as exc:
        print(f"distqueue: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
