"""``distqueue schedule``: put an item on a queue at every tick of a schedule, once per tick
however many schedulers run."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from typing import Any

from .common import need_url, url_option
from .worker import KINDS


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "schedule",
        help="put an item on a queue at every tick, once per tick across schedulers",
        description="Put ITEM on the queue at every tick of a schedule (every N seconds, or a "
        "cron expression in a time zone). Any number of schedulers may run the same schedule: "
        "each tick is claimed on the server, and put once. A tick missed by more than --grace "
        "seconds is skipped.",
    )
    url_option(p)
    p.add_argument("--queue", "-q", required=True, help="the queue's name")
    p.add_argument("--kind", choices=sorted(KINDS), default="fifo", help="queue kind (%(default)s)")
    p.add_argument("--name", required=True, help="the schedule's name, unique per queue")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=float, metavar="SECONDS", help="a tick every SECONDS")
    when.add_argument("--cron", metavar="EXPR", help="a cron expression (needs --tz)")
    p.add_argument("--tz", help="the cron expression's time zone, e.g. UTC, Europe/Paris")
    p.add_argument("--item", default="null", help="the item to put, as JSON (null)")
    p.add_argument(
        "--grace", type=float, help="seconds after a tick it is still put (60, or the period)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..schedule import Periodic, Scheduler

    try:
        item = json.loads(args.item)
    except ValueError as exc:
        raise ValueError(f"--item is not JSON: {exc}") from exc
    periodic = Periodic(args.name, item, args.every, args.cron, args.tz, args.grace)
    queue = KINDS[args.kind](url=need_url(args), name=args.queue)
    scheduler = Scheduler(queue, [periodic])
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: scheduler.stop())
    logging.getLogger("distqueue.schedule").info(
        "schedule %r on queue %r: started", periodic.name, queue.name
    )
    try:
        scheduler.run()
    finally:
        queue.close()
    return 0
