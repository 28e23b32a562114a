"""Real servers for the tests: redis-server and memcached on 127.0.0.1, on free ports.

Where they come from: the local binaries when installed, else containers on a Docker engine
(``$DOCKER_HOST`` or the default socket; see ``containers.py``). ``DISTQUEUE_TEST_SERVERS=binaries``
or ``=docker`` forces one way. A server that cannot be had skips the tests that need it, except
under ``CI=true``, where it fails them.

:func:`start_redis` and :func:`start_memcached` give either kind (``cluster.py`` does the same
for the nodes of a Redis Cluster and of a Sentinel group). The classes here run the binaries;
tests that drive the server process itself (signals to its pid) build them directly with
:func:`require_binary`, and are skipped when containers are forced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from containers import MemcachedContainer, RedisContainer

SERVERS_VARIABLE = "DISTQUEUE_TEST_SERVERS"
WAYS = ("binaries", "docker")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class ServerUnavailable(RuntimeError):
    """Neither a binary nor a Docker engine could give the server asked for."""


def unavailable(message: str) -> NoReturn:
    """Skip the test for want of a server; under CI=true, fail it."""
    if in_ci():
        pytest.fail(message + "; under CI=true a missing server is a failure", pytrace=False)
    pytest.skip(message)


def forced_way() -> str | None:
    """``binaries`` or ``docker`` when $DISTQUEUE_TEST_SERVERS forces one, else None."""
    way = os.environ.get(SERVERS_VARIABLE, "").strip().lower()
    if not way:
        return None
    if way not in WAYS:
        raise ValueError(f"{SERVERS_VARIABLE}={way!r}: expected one of {', '.join(WAYS)}")
    return way


def find_binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


def require_binary(name: str) -> str:
    """The path of a local server binary, for a test that drives the process itself."""
    if forced_way() == "docker":
        pytest.skip(f"needs a local {name} process, and {SERVERS_VARIABLE}=docker")
    path = find_binary(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install {name})")
    return path


def uses_docker(binary: str) -> bool:
    """Whether servers of ``binary`` run in containers: forced so, or the binary is missing and
    an engine answers."""
    way = forced_way()
    if way is not None:
        return way == "docker"
    if find_binary(binary) is not None:
        return False
    from containers import engine_answers

    return engine_answers()


def installed_binary(name: str) -> str:
    """The path of the local ``name``, for servers that are not to run in containers.

    Raises :class:`ServerUnavailable` when it is not installed.
    """
    binary = find_binary(name)
    if binary is None:
        why = f"{SERVERS_VARIABLE}=binaries" if forced_way() else "no Docker engine answers"
        raise ServerUnavailable(f"{name} is not installed (apt-get install {name}), and {why}")
    return binary


def start_redis(directory: Path, *, appendonly: bool = False) -> RedisServer | RedisContainer:
    """A redis-server on a free port: the local binary (in ``directory``), else a container.

    Raises :class:`ServerUnavailable` when neither can be had, saying why in one line.
    """
    if not uses_docker("redis-server"):
        return RedisServer(installed_binary("redis-server"), directory, appendonly=appendonly)
    from containers import EngineUnavailable, RedisContainer

    try:
        return RedisContainer(free_port(), appendonly=appendonly)
    except EngineUnavailable as exc:
        raise ServerUnavailable(str(exc)) from None


def start_memcached(*, item_size_max: str | None = None) -> MemcachedProcess | MemcachedContainer:
    """A memcached on a free port: the local binary, else a container.

    Raises :class:`ServerUnavailable` when neither can be had, saying why in one line.
    """
    if not uses_docker("memcached"):
        return MemcachedProcess(installed_binary("memcached"), item_size_max=item_size_max)
    from containers import EngineUnavailable, MemcachedContainer

    try:
        return MemcachedContainer(free_port(), item_size_max=item_size_max)
    except EngineUnavailable as exc:
        raise ServerUnavailable(str(exc)) from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"server on port {port} did not start within {timeout} s")


def redis_server_command(
    binary: str,
    port: int,
    directory: Path,
    *,
    appendonly: bool = False,
    loglevel: str = "warning",
    extra: Sequence[str] = (),
) -> list[str]:
    """A redis-server on 127.0.0.1:``port`` in ``directory``, in the foreground, at ``hz 100``,
    with no snapshots; with ``appendonly``, every write synced to its AOF."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        *(["--appendfsync", "always"] if appendonly else []),
        "--daemonize", "no",
        "--hz", "100",
        "--loglevel", loglevel,
        "--logfile", str(directory / "redis.log"),
        *extra,
    ]  # fmt: skip


class RedisServer:
    """A redis-server process that a test may stop, kill and restart on the same port."""

    def __init__(self, binary: str, directory: Path, *, appendonly: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = redis_server_command(
            self.binary, self.port, self.directory, appendonly=self.appendonly
        )
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def close(self) -> None:
        """Done with for good (a container's counterpart also removes the container)."""
        self.kill()


class MemcachedServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"memcached://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def close(self) -> None:
        """Done with for good (a container's counterpart also removes the container)."""
        self.kill()


class MemcachedProcess(MemcachedServer):
    """A memcached process that a test may kill and restart on the same port.

    Unlike :class:`MemcachedServer` it also starts when the tests run as root (memcached
    refuses to without ``-u``), and it takes an item size limit (``-I``, e.g. ``"2m"``).
    """

    def __init__(self, binary: str, *, item_size_max: str | None = None) -> None:
        self.item_size_max = item_size_max
        super().__init__(binary)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        if self.item_size_max is not None:
            args += ["-I", self.item_size_max]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
