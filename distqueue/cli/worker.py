"""``distqueue worker``: run tasks, or a function, on a queue's items."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import tasks
from ..executor import DEFAULT_QUEUE
from ..queue import LifoQueue, PriorityQueue, Queue
from ..results import ResultStore
from ..url import resolve_url, results_url_for
from ..worker import Worker
from .common import url_option

ALLOW_ENV_VAR = "DISTQUEUE_ALLOW"

KINDS: dict[str, type[Queue[Any]]] = {"fifo": Queue, "lifo": LifoQueue, "priority": PriorityQueue}


def add_parser(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run tasks or a function on a queue's items",
        description="Run the tasks that distqueue.Executor submits (those allowed with --allow), "
        "or call MODULE:FUNCTION with each item of the queue.",
    )
    url_option(worker)
    worker.add_argument("--queue", default=DEFAULT_QUEUE, help="queue name (%(default)s)")
    worker.add_argument(
        "--kind", choices=sorted(KINDS), default="fifo", help="queue kind (%(default)s)"
    )
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
    worker.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between heartbeats in the server's registry (%(default)s)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs distqueue[ops])",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics endpoint listens on (%(default)s)",
    )
    worker.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
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
    metrics = None
    server = None
    if args.metrics_port is not None:
        from ..metrics import WorkerMetrics, serve

        metrics = WorkerMetrics(args.queue)
        server = serve(metrics.registry, args.metrics_host, args.metrics_port)
    queue = KINDS[args.kind](
        url=args.url,
        name=args.queue,
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
        "heartbeat": args.heartbeat if args.heartbeat > 0 else None,
        "metrics": metrics,
    }
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    worker: Worker
    if args.asyncio:
        from ..aio.worker import AsyncWorker

        worker = AsyncWorker(queue, function, grace=args.grace, **options)
    else:
        worker = Worker(queue, function, **options)
    try:
        return worker.run()
    finally:
        queue.close()
        if results is not None:
            results.close()
        if server is not None:
            server.shutdown()
