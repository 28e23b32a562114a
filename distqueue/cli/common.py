"""Options and helpers that several commands share."""

from __future__ import annotations

import argparse
import os

from ..registry import QueueEntry, Registry
from ..url import ENV_VAR


def url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_VAR),
        help=f"the server's URL, e.g. redis://localhost:6379/0 (default: ${ENV_VAR})",
    )


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def queue_option(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--queue", "-q", required=required, help="the queue's name")
    parser.add_argument(
        "--kind",
        choices=["fifo", "lifo", "priority"],
        help="the queue's kind, for a queue the registry does not know (fifo)",
    )


def need_url(args: argparse.Namespace) -> str:
    if not args.url:
        raise ValueError(f"give --url redis://HOST:6379/0 or set ${ENV_VAR}")
    return str(args.url)


def entry_for(registry: Registry, args: argparse.Namespace) -> QueueEntry:
    """The queue ``--queue`` names: the registry's entry, or one of ``--kind`` for a queue the
    registry does not know. ``ValueError`` saying what to do otherwise."""
    entry = registry.queue(args.queue)
    if entry is not None and entry.readable and args.kind in (None, entry.kind):
        return entry
    if args.kind is not None:
        return QueueEntry(name=args.queue, kind=args.kind)
    if entry is not None:
        raise ValueError(
            f"queue {args.queue!r}: {entry.error}; give --kind fifo|lifo|priority to use it "
            f"anyway, or `distqueue delete --queue {args.queue} --kind ... --yes` to drop it"
        )
    raise ValueError(
        f"no queue {args.queue!r} is registered on this server: see `distqueue queues` for the "
        "names, or give --kind fifo|lifo|priority for a queue opened by an older distqueue"
    )
