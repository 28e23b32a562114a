"""``distqueue exporter`` and ``distqueue dashboard``: long-running servers over a queue server."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from .common import need_url, url_option


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "exporter",
        help="serve Prometheus metrics of every queue on a server",
        description="Serve the figures of every registered queue (or those given with "
        "--queue) at http://HOST:PORT/metrics, read at each scrape. Needs distqueue[ops].",
    )
    url_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    p.add_argument("--port", type=int, default=9808, help="port (%(default)s)")
    p.add_argument("--queue", "-q", action="append", help="only this queue (repeat)")
    p.set_defaults(handler=exporter)

    p = commands.add_parser(
        "dashboard",
        help="serve the web dashboard",
        description="Serve a web dashboard of the server's queues and workers at "
        "http://HOST:PORT/. Read-only unless --allow-actions. Needs distqueue[ops].",
    )
    url_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (%(default)s)")
    p.add_argument(
        "--allow-actions",
        action="store_true",
        help="show requeue and purge buttons (off: the dashboard only reads)",
    )
    p.add_argument(
        "--refresh", type=float, default=2.0, help="seconds between live updates (%(default)s)"
    )
    p.set_defaults(handler=dashboard)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def exporter(args: argparse.Namespace) -> int:
    from ..metrics import exporter_registry, serve

    registry, collector = exporter_registry(need_url(args), args.queue)
    try:
        server = serve(registry, args.host, args.port)
        print(f"metrics at http://{args.host}:{args.port}/metrics", flush=True)
        try:
            _wait_for_signal()
        finally:
            server.shutdown()
    finally:
        collector.close()
    return 0


def dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from ..dashboard import create_app

    app = create_app(need_url(args), allow_actions=args.allow_actions, refresh=args.refresh)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"distqueue: the dashboard listens on {args.host}, beyond this machine, and has no "
            "login of its own: put it behind your own authentication",
            file=sys.stderr,
            flush=True,
        )
    print(f"dashboard at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
