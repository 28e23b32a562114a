"""Run a command beside a redis-server of its own, then remove the server.

    python tests/with_redis.py COMMAND [ARGS...]    # each {url} in ARGS becomes the server's URL

The server is the local redis-server when one is installed, else a ``redis:7`` container on the
Docker engine that ``$DOCKER_HOST`` names (or the default socket); ``DISTQUEUE_TEST_SERVERS``
set to ``binaries`` or ``docker`` forces one way. It is removed when the command ends, fails, or
is interrupted (Ctrl-C, SIGTERM). ``./dev demo --with-redis`` runs the demo this way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from servers import RedisServer, ServerUnavailable, start_redis


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through the finally clauses that stop the server


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with tempfile.TemporaryDirectory(prefix="distqueue-redis-") as directory:
        try:
            server = start_redis(Path(directory))
        except ServerUnavailable as exc:
            print(f"no redis-server to run on: {exc}", file=sys.stderr)
            return 1
        command: subprocess.Popen[bytes] | None = None
        try:
            where = (
                f"local {server.binary}"
                if isinstance(server, RedisServer)
                else f"{server.image} container {server.container.short_id}"
            )
            print(f"redis-server ({where}) on {server.url}", flush=True)
            command = subprocess.Popen([arg.replace("{url}", server.url) for arg in argv])
            return command.wait()
        except KeyboardInterrupt:
            return 130
        finally:
            if command is not None and command.poll() is None:
                command.terminate()
                command.wait()
            server.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
