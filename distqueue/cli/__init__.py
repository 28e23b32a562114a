"""The ``distqueue`` command line (also ``python -m distqueue``).

    distqueue queues|stats|workers|peek|put|get|purge|delete [--url URL] ...
    distqueue dead list|show|requeue|purge [--url URL] --queue NAME ...
    distqueue worker [--url URL] [--queue NAME] [--metrics-port PORT] ... [MODULE:FUNCTION]
    distqueue exporter [--url URL] [--port 9808]
    distqueue dashboard [--url URL] [--port 8080] [--allow-actions]

``--url`` defaults to ``$DISTQUEUE_URL``. Tables are for people; ``--json`` prints JSON for
scripts. Queues are found in the server's registry (:mod:`distqueue.registry`). Exit status:
0 done, 1 an error (said on stderr), 2 a usage error, 3 ``get`` found the queue empty.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import DistQueueError
from . import dead, queues, schedule, serve, worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distqueue",
        description="See and steer distqueue's queues, and run workers.",
        epilog="`distqueue COMMAND --help` tells more of each command.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    queues.add_parsers(commands)
    dead.add_parser(commands)
    worker.add_parser(commands)
    serve.add_parsers(commands)
    schedule.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        status: int = args.handler(args)
    except (DistQueueError, ValueError) as exc:
        print(f"distqueue: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `distqueue ... | head`
        return 0
    return status
