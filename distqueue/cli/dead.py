"""``distqueue dead list|show|requeue|purge``: the dead letters of a queue."""

from __future__ import annotations

import argparse
from typing import Any

from ..inspection import show
from ..registry import QueueEntry
from .common import entry_for, json_option, queue_option, url_option
from .output import Progress, print_json, table
from .queues import confirm, inspector_for


def add_parser(commands: Any) -> None:
    dead = commands.add_parser(
        "dead",
        help="dead letters: list, show, requeue, purge",
        description="Dead letters: items delivered max_deliveries times without an "
        "acknowledgement, refused tasks, and payloads that could not be decoded.",
    )
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in [
        ("list", "list dead letters, oldest first"),
        ("show", "show one dead letter whole"),
        ("requeue", "put dead letters back on the queue"),
        ("purge", "delete dead letters for good (needs --yes)"),
    ]:
        a = actions.add_parser(action, help=text, description=text.capitalize() + ".")
        url_option(a)
        queue_option(a)
        if action == "show":
            a.add_argument("id", help="the dead letter's id (see `distqueue dead list`)")
            json_option(a)
        else:
            a.add_argument("--limit", "-n", type=int, help="at most this many, oldest first")
            a.add_argument("--error", help="only those whose error contains this text")
            a.add_argument(
                "--id", action="append", dest="ids", metavar="ID", help="only this one (repeat)"
            )
        if action == "list":
            json_option(a)
        if action in ("requeue", "purge"):
            a.add_argument(
                "--progress", action="store_true", help="show progress even off a terminal"
            )
        if action == "purge":
            a.add_argument("--yes", action="store_true", help="yes, delete them")
        a.set_defaults(handler=dead_command)


def _letter_dict(letter: Any, entry: QueueEntry) -> dict[str, Any]:
    payload = letter.payload
    return {
        "id": letter.id,
        "item": show(payload, entry.serializer) if payload is not None else repr(letter.item),
        "payload": None if payload is None else payload.decode("utf-8", "replace"),
        "deliveries": letter.deliveries,
        "error": letter.error,
    }


def dead_command(args: argparse.Namespace) -> int:
    with inspector_for(args) as inspector:
        entry = entry_for(inspector.registry, args)
        if args.action == "show":
            for letter in inspector.dead_letters(entry, 2**31 - 1):
                if letter.id == args.id:
                    found = _letter_dict(letter, entry)
                    if args.json:
                        print_json(found)
                    else:
                        for key, value in found.items():
                            print(f"{key}: {value}")
                    return 0
            raise ValueError(
                f"queue {entry.name!r} has no dead letter {args.id!r}: see "
                f"`distqueue dead list --queue {entry.name}`"
            )
        filtered = bool(args.error or args.ids)
        letters = None
        if filtered or args.action == "list":
            letters = inspector.dead_letters(entry, 2**31 - 1)
            if args.ids:
                letters = [letter for letter in letters if letter.id in args.ids]
            if args.error:
                letters = [d for d in letters if args.error.lower() in d.error.lower()]
            if args.limit is not None:
                letters = letters[: args.limit]
        if args.action == "list":
            assert letters is not None
            rows = [_letter_dict(letter, entry) for letter in letters]
            if args.json:
                for row in rows:
                    print_json(row)
            elif rows:
                table(
                    ["ID", "DELIVERIES", "ERROR", "ITEM"],
                    [[r["id"], r["deliveries"], r["error"], r["item"]] for r in rows],
                )
            else:
                print(f"no dead letters on {entry.name!r}")
            return 0
        if args.action == "purge":
            confirm(args, f"delete dead letters of {entry.name!r} for good")
        progress = Progress(
            "requeueing" if args.action == "requeue" else "purging", force=args.progress
        )
        ids = None if letters is None else [letter.id for letter in letters]
        if ids is None and args.limit is not None:
            queue = inspector.open(entry)
            try:
                step = queue.requeue_dead if args.action == "requeue" else queue.purge_dead
                done = step(args.limit)
            finally:
                queue.close()
        elif args.action == "requeue":
            done = inspector.requeue_dead(entry, ids, progress)
        else:
            done = inspector.purge_dead(entry, ids, progress)
        progress.finish()
    verb = "requeued" if args.action == "requeue" else "purged"
    print(f"{verb} {done} dead letter(s)")
    return 0
